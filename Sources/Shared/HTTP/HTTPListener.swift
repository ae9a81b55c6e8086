import CLibevent
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Answers HTTP requests; called on the listener's loop thread.
public protocol HTTPHandler: AnyObject {
    func handle(_ request: HTTPRequest, _ responder: Responder)
}

/// A listening socket on one libevent loop that turns accepted sockets into
/// HTTPConnections. SO_REUSEPORT lets several loops (threads) of one process
/// listen on the same address, and the kernel spreads connections over them.
///
/// SO_REUSEPORT would also let a second process share a port that is taken,
/// silently splitting the traffic between two servers. So the first loop's
/// listener (`exclusive`) first binds the address without it: taken means an
/// error naming the address, and the process stops.
public final class HTTPListener {
    public let limits: HTTPLimits
    public unowned let handler: HTTPHandler
    /// HTTPS: every accepted connection speaks TLS with this context's certificate.
    let tls: TLSServerContext?
    private let base: OpaquePointer
    private var listener: OpaquePointer?
    /// Open connections (each retains itself while open; listed here so a
    /// shutdown can close the idle ones).
    private var connections: [ObjectIdentifier: HTTPConnection] = [:] {
        didSet { openCount.store(connections.count, ordering: .relaxed) }
    }
    private let openCount = Atomic<Int>(0)
    /// Shutting down: connections close after their current response.
    public private(set) var closing = false
    /// Called (on the loop thread) each time a connection is refused at the limit.
    public var onRefused: (() -> Void)?

    /// `setting` names the configuration that gave the address, for errors.
    public init(loop: LibeventLoop, address: ListenAddress, limits: HTTPLimits, handler: HTTPHandler,
                setting: String, exclusive: Bool = true, backlog: Int32 = 1024, tls: TLSServerContext? = nil) throws {
        self.base = loop.base
        self.limits = limits
        self.handler = handler
        self.tls = tls
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var info: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(address.host, String(address.port), &hints, &info) == 0, let ai = info else {
            throw ConfigError("\(setting): cannot resolve '\(address)'")
        }
        defer { freeaddrinfo(info) }
        if exclusive && address.port != 0 {
            try HTTPListener.checkFree(ai.pointee, address: address, setting: setting)
        }
        let flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC
        listener = evconnlistener_new_bind(loop.base, { _, fd, _, _, ctx in
            Unmanaged<HTTPListener>.fromOpaque(ctx!).takeUnretainedValue().accept(fd)
        }, Unmanaged.passUnretained(self).toOpaque(), flags, backlog, ai.pointee.ai_addr, Int32(ai.pointee.ai_addrlen))
        guard listener != nil else {
            throw ConfigError("\(setting): cannot listen on \(address): \(String(cString: strerror(errno)))")
        }
    }

    /// Binds the address without SO_REUSEPORT and lets it go: EADDRINUSE means
    /// another process (or another spool-api) serves there.
    private static func checkFree(_ ai: addrinfo, address: ListenAddress, setting: String) throws {
        let fd = socket(ai.ai_family, ai.ai_socktype, ai.ai_protocol)
        guard fd >= 0 else { return }
        defer { Glibc.close(fd) }
        var one: Int32 = 1
        // SO_REUSEADDR only skips TIME_WAIT leftovers; a listening socket still conflicts.
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if bind(fd, ai.ai_addr, ai.ai_addrlen) != 0 && errno == EADDRINUSE {
            throw ConfigError("\(setting): cannot listen on \(address): the address is already in use (is another spool process running there?)")
        }
    }

    /// The port actually bound (useful when configured as 0).
    public var boundPort: Int {
        let fd = evconnlistener_get_fd(listener)
        var storage = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        let port = withUnsafePointer(to: &storage) { p -> UInt16 in
            p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_port }
        }
        return Int(UInt16(bigEndian: port))
    }

    private func accept(_ fd: Int32) {
        guard connections.count < limits.maxConnectionsPerLoop, !closing else {
            // Over the limit: closing at once is the cheapest answer that
            // cannot be turned into a way to exhaust memory.
            Glibc.close(fd)
            if !closing { onRefused?() }
            return
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let made: OpaquePointer?
        if let tls {
            // The handshake runs inside the bufferevent; the SSL object and the
            // socket are freed with it.
            guard let ssl = tls.newSSL() else {
                Glibc.close(fd)
                return
            }
            made = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue))
            // A client that closes without TLS' close_notify is an ordinary end, not an error.
            if let made { bufferevent_openssl_set_allow_dirty_shutdown(made, 1) }
        } else {
            made = bufferevent_socket_new(base, fd, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue))
        }
        guard let bev = made else {
            Glibc.close(fd)
            return
        }
        let connection = HTTPConnection(bev: bev, server: self, tls: tls != nil)
        connections[ObjectIdentifier(connection)] = connection
        connection.start()
    }

    func connectionClosed(_ connection: HTTPConnection) { connections[ObjectIdentifier(connection)] = nil }

    /// Open connections, readable from any thread.
    public var connectionCount: Int { openCount.load(ordering: .relaxed) }

    /// For shutdown, on the loop thread: no new connections, idle keep-alive
    /// connections closed now, busy ones after their current response.
    public func closeConnections() {
        closing = true
        if let listener {
            evconnlistener_free(listener)
            self.listener = nil
        }
        for c in Array(connections.values) { c.closeWhenIdle() }
    }
}

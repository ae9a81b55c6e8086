import CLibevent
#if canImport(Glibc)
import Glibc
#endif

/// Answers HTTP requests; called on the listener's loop thread.
public protocol HTTPHandler: AnyObject {
    func handle(_ request: HTTPRequest, _ responder: Responder)
}

/// A listening socket on one libevent loop that turns accepted sockets into
/// HTTPConnections. SO_REUSEPORT lets several loops (threads) listen on the
/// same address, and the kernel spreads connections over them.
public final class HTTPListener {
    public let limits: HTTPLimits
    public unowned let handler: HTTPHandler
    private let base: OpaquePointer
    private var listener: OpaquePointer?
    private var openConnections = 0

    /// `setting` names the configuration that gave the address, for errors.
    public init(base: OpaquePointer, address: ListenAddress, limits: HTTPLimits, handler: HTTPHandler,
                setting: String, backlog: Int32 = 1024) throws {
        self.base = base
        self.limits = limits
        self.handler = handler
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var info: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(address.host, String(address.port), &hints, &info) == 0, let ai = info else {
            throw ConfigError("\(setting): cannot resolve '\(address)'")
        }
        defer { freeaddrinfo(info) }
        let flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC
        listener = evconnlistener_new_bind(base, { _, fd, _, _, ctx in
            Unmanaged<HTTPListener>.fromOpaque(ctx!).takeUnretainedValue().accept(fd)
        }, Unmanaged.passUnretained(self).toOpaque(), flags, backlog, ai.pointee.ai_addr, Int32(ai.pointee.ai_addrlen))
        guard listener != nil else {
            throw ConfigError("\(setting): cannot listen on \(address): \(String(cString: strerror(errno)))")
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
        guard openConnections < limits.maxConnectionsPerLoop else {
            // Over the limit: closing at once is the cheapest answer that
            // cannot be turned into a way to exhaust memory.
            Glibc.close(fd)
            return
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        guard let bev = bufferevent_socket_new(base, fd, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue)) else {
            Glibc.close(fd)
            return
        }
        openConnections += 1
        HTTPConnection(bev: bev, server: self).start()
    }

    func connectionClosed() { openConnections -= 1 }

    /// Stops accepting new connections; safe from another thread once
    /// `evthread_use_pthreads()` was called.
    public func stopAccepting() {
        if let listener { evconnlistener_disable(listener) }
    }
}

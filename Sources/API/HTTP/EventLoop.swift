import CLibevent
import Logging
import Shared
#if canImport(Glibc)
import Glibc
#endif

/// One API event loop on its own thread: a listening socket (SO_REUSEPORT, so
/// the kernel spreads connections over the loops), the connections it accepted,
/// and its own async Redis connection, on which the commands of concurrent
/// requests pipeline by themselves.
final class EventLoop {
    let base: OpaquePointer
    let limits: HTTPLimits
    let redis: AsyncRedisConnection
    private(set) var router: Router!
    private var listener: OpaquePointer?
    private var openConnections = 0
    private let logger: Logger

    init(index: Int, config: APIConfig, logger: Logger) throws {
        guard let base = event_base_new() else { throw ConfigError("could not create an event loop") }
        self.base = base
        self.limits = config.httpLimits
        self.logger = logger
        self.redis = AsyncRedisConnection(endpoint: config.redis, base: base, commandTimeoutMs: config.redisTimeoutMs)
        self.router = Router(loop: self, config: config, logger: logger)
        try listen(on: config.address, backlog: 1024)
    }

    private func listen(on address: ListenAddress, backlog: Int32) throws {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_PASSIVE
        var info: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(address.host, String(address.port), &hints, &info) == 0, let ai = info else {
            throw ConfigError("SPOOL_API_ADDR: cannot resolve '\(address)'")
        }
        defer { freeaddrinfo(info) }
        let flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_EXEC
        listener = evconnlistener_new_bind(base, { _, fd, _, _, ctx in
            Unmanaged<EventLoop>.fromOpaque(ctx!).takeUnretainedValue().accept(fd)
        }, Unmanaged.passUnretained(self).toOpaque(), flags, backlog, ai.pointee.ai_addr, Int32(ai.pointee.ai_addrlen))
        guard listener != nil else {
            throw ConfigError("SPOOL_API_ADDR: cannot listen on \(address): \(String(cString: strerror(errno)))")
        }
    }

    /// The port actually bound (useful when configured as 0).
    var boundPort: Int {
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
        HTTPConnection(bev: bev, loop: self).start()
    }

    func connectionClosed() { openConnections -= 1 }

    /// Runs the loop until `stop` is called (from any thread).
    func run() {
        redis.start()
        event_base_dispatch(base)
    }

    /// Stops accepting new connections; safe from another thread.
    func stopAccepting() {
        if let listener { evconnlistener_disable(listener) }
    }

    func stop() { event_base_loopexit(base, nil) }
}

import CLibevent
import COpenSSL
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The in-process TLS relay that gives hiredis 0.14 (no TLS of its own)
/// `rediss://`: for each Redis it is asked about, a Unix socket in a private
/// directory (0700, this process only). hiredis connects there as to a local
/// Redis; each connection accepted is paired with a new TLS connection to the
/// real Redis, and bytes are copied both ways. One hiredis connection is one
/// TLS connection, so blocking commands, pub/sub and timeouts behave as over
/// TCP. The relay runs on a thread and libevent loop of its own.
///
/// Why not a sidecar (stunnel): one more process to ship, start, watch and
/// secure, per pod; and a certificate problem would show as "connection
/// refused" instead of the reason the relay records (`lastFailure`).
public final class TLSRelay: @unchecked Sendable {  // all mutable state under `lock`
    public static let shared = TLSRelay()

    private let lock = Lock()
    private var loop: LibeventLoop?
    private var thread: BackgroundThread?
    private var directory: String?
    private var routes: [Destination: Route] = [:]
    /// Logs TLS failures (set by the process at start).
    public var logger: Logger?

    struct Destination: Hashable {
        let host: String
        let port: Int
        let tls: RedisTLS
    }

    /// The Unix socket hiredis connects to for the TLS endpoint `endpoint`
    /// (its host, port and TLS settings); made on first use.
    ///
    /// The host name is resolved here, on the caller's thread, at every
    /// connect (a managed Redis' address changes in a failover): the relay's
    /// own thread never waits for DNS, which would stall every connection it
    /// carries.
    public func socketPath(for endpoint: RedisEndpoint) throws -> String {
        guard let tls = endpoint.tls else { throw RedisError.connection("not a TLS endpoint") }
        let destination = Destination(host: endpoint.host, port: endpoint.port, tls: tls)
        let resolved = TLSRelay.resolve(endpoint.host, endpoint.port)
        return try lock.locked {
            let route: Route
            if let known = routes[destination] {
                route = known
            } else {
                let loop = try startIfNeeded()
                route = try Route(destination: destination, path: "\(directory!)/\(routes.count).sock", loop: loop, relay: self)
                routes[destination] = route
            }
            if let resolved { route.address = resolved }
            guard route.address != nil else {
                throw RedisError.connection("\(endpoint.address): cannot resolve \(endpoint.host)")
            }
            return route.path
        }
    }

    /// The first address of `host`, or nil when it does not resolve.
    static func resolve(_ host: String, _ port: Int) -> [UInt8]? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = 1  // SOCK_STREAM
        var info: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &info) == 0, let ai = info, let sa = ai.pointee.ai_addr else { return nil }
        defer { freeaddrinfo(info) }
        return Array(UnsafeRawBufferPointer(start: sa, count: Int(ai.pointee.ai_addrlen)))
    }

    /// Why the last TLS connection to the endpoint failed, if it did
    /// (certificate refused, handshake failed, unreachable).
    public func lastFailure(for endpoint: RedisEndpoint) -> String? {
        guard let tls = endpoint.tls else { return nil }
        return lock.locked { routes[Destination(host: endpoint.host, port: endpoint.port, tls: tls)]?.lastFailure }
    }

    fileprivate func noteFailure(_ route: Route, _ why: String) {
        let first = lock.locked { () -> Bool in
            let changed = route.lastFailure != why
            route.lastFailure = why
            return changed
        }
        if first {
            logger?.error("TLS to Redis failed", metadata: ["redis": "\(route.destination.host):\(route.destination.port)", "error": "\(why)"])
        }
    }

    fileprivate func noteSuccess(_ route: Route) { lock.locked { route.lastFailure = nil } }

    fileprivate func lockedAddress(_ route: Route) -> [UInt8]? { lock.locked { route.address } }

    private func startIfNeeded() throws -> LibeventLoop {
        if let loop { return loop }
        LibeventLoop.enableThreads()
        var template = Array("\(TLSRelay.temporaryDirectory)/spool-tls-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw RedisError.connection("TLS relay: cannot make a private directory in \(TLSRelay.temporaryDirectory): \(String(cString: strerror(errno)))")
        }
        directory = String(cString: made)
        let loop = try LibeventLoop()
        self.loop = loop
        thread = BackgroundThread(name: "spool-tls-relay") {
            // Keeps running with no events (the listeners come later).
            let keepAlive = loop.every(milliseconds: 60_000) {}
            loop.run()
            _ = keepAlive
        }
        return loop
    }

    static var temporaryDirectory: String {
        if let t = getenv("TMPDIR"), t.pointee != 0 { return String(cString: t) }
        return "/tmp"
    }

    /// Removes the sockets and their directory (at exit; best effort).
    public func removeSockets() {
        lock.locked {
            for route in routes.values { unlink(route.path) }
            if let directory { rmdir(directory) }
        }
    }

    /// One Redis: its listening socket and its TLS context.
    fileprivate final class Route {
        let destination: Destination
        let path: String
        let context: OpaquePointer
        unowned let relay: TLSRelay
        let base: OpaquePointer
        var lastFailure: String?  // under the relay's lock
        /// The sockaddr bytes of Redis, resolved by the last `socketPath` (under the relay's lock).
        var address: [UInt8]?

        init(destination: Destination, path: String, loop: LibeventLoop, relay: TLSRelay) throws {
            self.destination = destination
            self.path = path
            self.relay = relay
            self.base = loop.base
            context = try destination.tls.makeContext()
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw RedisError.connection("TLS relay: socket(): \(String(cString: strerror(errno)))") }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(path.utf8)
            guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
                Glibc.close(fd)
                throw RedisError.connection("TLS relay: socket path too long: \(path)")
            }
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                for (i, b) in bytes.enumerated() { raw[i] = b }
                raw[bytes.count] = 0
            }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard bound == 0, listen(fd, 1024) == 0 else {
                let why = String(cString: strerror(errno))
                Glibc.close(fd)
                throw RedisError.connection("TLS relay: cannot listen on \(path): \(why)")
            }
            evutil_make_socket_nonblocking(fd)
            // The listener is registered on the relay's loop; a connection made
            // before that waits in the backlog.
            let me = Unmanaged.passRetained(self).toOpaque()
            loop.perform {
                _ = evconnlistener_new(self.base, { _, client, _, _, ctx in
                    Unmanaged<Route>.fromOpaque(ctx!).takeUnretainedValue().accept(client)
                }, me, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0 /* listening already */, fd)
            }
        }

        /// A hiredis connection arrived: open its TLS twin to Redis.
        func accept(_ client: Int32) {
            guard let down = bufferevent_socket_new(base, client, Int32(BEV_OPT_CLOSE_ON_FREE.rawValue)) else {
                Glibc.close(client)
                return
            }
            // Out of memory below: `down` owns the client socket; libevent frees
            // the SSL object itself when it cannot make `up`.
            guard let ssl = SSL_new(context) else {
                bufferevent_free(down)
                return
            }
            destination.tls.configure(ssl, host: destination.host)
            guard let up = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                          Int32(BEV_OPT_CLOSE_ON_FREE.rawValue)) else {
                bufferevent_free(down)
                return
            }
            let pipe = Pipe(route: self, down: down, up: up)
            pipe.start()
            guard var address = relay.lockedAddress(self) else {
                return pipe.fail("\(destination.host):\(destination.port): cannot resolve \(destination.host)")
            }
            let started = address.withUnsafeMutableBytes { raw in
                bufferevent_socket_connect(up, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), Int32(raw.count))
            }
            if started != 0 {
                pipe.fail("\(destination.host):\(destination.port): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// One hiredis connection and its TLS twin, copying bytes both ways. When
    /// one side has more than `highWater` bytes waiting to be written, the
    /// other side stops reading until it drains (a slow reader cannot make
    /// the relay buffer without bound).
    fileprivate final class Pipe {
        let route: Route
        let down: OpaquePointer
        let up: OpaquePointer
        var closed = false
        var connected = false
        static let highWater = 4 << 20
        static let lowWater = 1 << 20

        init(route: Route, down: OpaquePointer, up: OpaquePointer) {
            self.route = route
            self.down = down
            self.up = up
        }

        func start() {
            let me = Unmanaged.passRetained(self).toOpaque()
            for bev in [down, up] {
                bufferevent_setcb(bev, { bev, ctx in
                    Unmanaged<Pipe>.fromOpaque(ctx!).takeUnretainedValue().readable(bev!)
                }, { bev, ctx in
                    Unmanaged<Pipe>.fromOpaque(ctx!).takeUnretainedValue().drained(bev!)
                }, { bev, events, ctx in
                    Unmanaged<Pipe>.fromOpaque(ctx!).takeUnretainedValue().event(bev!, events)
                }, me)
                bufferevent_setwatermark(bev, Int16(EV_WRITE), Pipe.lowWater, 0)
                bufferevent_enable(bev, Int16(EV_READ | EV_WRITE))
            }
            // Redis may close a connection without TLS' close_notify.
            bufferevent_openssl_set_allow_dirty_shutdown(up, 1)
        }

        private func other(_ bev: OpaquePointer) -> OpaquePointer { bev == down ? up : down }

        func readable(_ bev: OpaquePointer) {
            let target = other(bev)
            evbuffer_add_buffer(bufferevent_get_output(target), bufferevent_get_input(bev))
            if evbuffer_get_length(bufferevent_get_output(target)) > Pipe.highWater {
                bufferevent_disable(bev, Int16(EV_READ))
            }
        }

        /// `bev`'s output fell to the low-water mark: its peer may read again.
        func drained(_ bev: OpaquePointer) {
            guard !closed else { return }
            bufferevent_enable(other(bev), Int16(EV_READ))
        }

        func upEvent(_ events: Int16) {
            if events & Int16(BEV_EVENT_CONNECTED) != 0 {
                connected = true
                route.relay.noteSuccess(route)
                let fd = bufferevent_getfd(up)
                var one: Int32 = 1
                setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, socklen_t(MemoryLayout<Int32>.size))
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                return
            }
            if events & Int16(BEV_EVENT_ERROR) != 0 {
                let ssl = bufferevent_openssl_get_ssl(up)
                let tlsError = bufferevent_get_openssl_error(up)
                let socketError = errno  // evutil_socket_geterror is errno on Unix
                let why: String
                if !connected && tlsError == 0 && socketError != 0 {
                    why = "\(route.destination.host):\(route.destination.port): \(String(cString: strerror(socketError)))"
                } else {
                    why = "\(route.destination.host):\(route.destination.port): \(RedisTLS.failure(connected ? nil : ssl, error: tlsError))"
                }
                if !connected { route.relay.noteFailure(route, why) }
            }
            // Redis closed (or failed): what it sent is already in hiredis' buffer; end hiredis' side too.
            close()
        }

        func event(_ bev: OpaquePointer, _ events: Int16) {
            if bev == up { return upEvent(events) }
            close()  // hiredis closed its connection (EOF) or it broke
        }

        func fail(_ why: String) {
            route.relay.noteFailure(route, why)
            close()
        }

        func close() {
            guard !closed else { return }
            closed = true
            // Bytes from Redis not yet handed to hiredis are flushed first when possible.
            if evbuffer_get_length(bufferevent_get_output(down)) > 0 {
                let fd = bufferevent_getfd(down)
                let out = bufferevent_get_output(down)
                _ = evbuffer_write(out, fd)
            }
            bufferevent_free(up)
            bufferevent_free(down)
            Unmanaged.passUnretained(self).release()
        }
    }
}

extension RedisEndpoint {
    /// The Unix socket hiredis connects to: the URL's (`unix://`), the TLS
    /// relay's for `rediss://`, or nil for a plain TCP connection to host:port.
    func localSocket() throws -> String? {
        if tls != nil { return try TLSRelay.shared.socketPath(for: self) }
        return socketPath
    }
}

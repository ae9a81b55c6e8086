import CHiredis
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A blocking Redis connection (hiredis' synchronous API), used by worker
/// threads and tests. One connection per thread; not thread-safe.
///
/// It connects lazily and reconnects on the next call after a failure, so a
/// caller only has to handle `RedisError` and try again later.
public final class RedisConnection {
    public let endpoint: RedisEndpoint
    /// How long a command may take before the call fails with `.timeout`.
    public let commandTimeoutMs: Int
    /// Refuse a node that is not a primary (off only to talk to sentinels).
    private let requiresPrimary: Bool
    private var context: UnsafeMutablePointer<redisContext>?
    /// The node connected to: the endpoint, or the primary its sentinels named.
    private var target: RedisEndpoint
    /// SentinelWatch.epoch when the connection was made.
    private var sentinelEpoch = 0
    /// For a `redis+cluster://` endpoint: the connections to its primaries,
    /// which every command goes through.
    private let cluster: BlockingClusterRouter?

    public init(endpoint: RedisEndpoint, commandTimeoutMs: Int = 5000, requiresPrimary: Bool = true) {
        self.endpoint = endpoint
        self.commandTimeoutMs = commandTimeoutMs
        self.requiresPrimary = requiresPrimary
        target = endpoint
        cluster = endpoint.cluster == nil ? nil : BlockingClusterRouter(endpoint: endpoint, timeoutMs: commandTimeoutMs)
    }

    deinit { disconnect() }

    public func disconnect() {
        cluster?.disconnect()
        if let c = context { redisFree(c) }
        context = nil
    }

    public func connect() throws {
        if let cluster { return try cluster.connect() }
        if context != nil {
            // Behind Sentinel, a failover since this connection was made
            // (SentinelWatch) sends it to the new primary.
            guard endpoint.sentinel != nil, SentinelWatch.epoch.load(ordering: .acquiring) != sentinelEpoch else { return }
            disconnect()
        }
        if endpoint.sentinel != nil {
            // During a failover, wait (up to one command timeout) for the
            // sentinels to name the new primary rather than fail at once: a
            // caller that backs off after each failure would come back late.
            let until = Clock.monotonicMillis() + Int64(commandTimeoutMs)
            while SentinelWatch.failoverInProgress.load(ordering: .acquiring) && Clock.monotonicMillis() < until {
                Clock.sleep(milliseconds: 20)
            }
        }
        sentinelEpoch = SentinelWatch.epoch.load(ordering: .acquiring)
        let target = try endpoint.resolved()
        self.target = target
        let tv = RedisConnection.timeval(ms: commandTimeoutMs)
        let local = try target.localSocket()
        let made = local.map { redisConnectUnixWithTimeout($0, tv) }
            ?? redisConnectWithTimeout(target.host, Int32(target.port), tv)
        guard let c = made else { throw RedisError.connection("out of memory") }
        if c.pointee.err != 0 {
            let message = RedisConnection.errorText(c.pointee)
            redisFree(c)
            throw RedisError.connection("\(target.address): \(message)")
        }
        redisSetTimeout(c, tv)
        // TCP only: on a Unix socket it fails and leaves the context in error.
        if local == nil { redisEnableKeepAlive(c) }
        // Handler processes the worker spawns must not inherit the socket.
        _ = fcntl(c.pointee.fd, F_SETFD, FD_CLOEXEC)
        context = c
        do {
            for cmd in target.handshake {
                if case .error(let e) = try command(cmd) {
                    disconnect()
                    throw RedisError.connection(target.handshakeFailure(cmd, e))
                }
            }
            guard requiresPrimary else { return }
            // A replica (a stale address after a failover, or a demoted primary
            // that came back) would refuse every write: refuse it first.
            if let why = RedisProblem.refusal(ofRole: try command(["ROLE"]), address: target.address) {
                disconnect()
                throw RedisError.connection(why)
            }
        } catch RedisError.connection(let message) where target.tls != nil {
            // Over TLS the relay knows why the connection ended (a refused certificate).
            throw RedisError.connection(TLSRelay.shared.lastFailure(for: target).map { "TLS to \($0)" } ?? message)
        }
    }

    /// Sends one command and waits for its reply. An error reply is returned as
    /// `.error`, not thrown: scripts use error replies for expected outcomes.
    @discardableResult
    public func command(_ args: [String]) throws -> RedisReply {
        if let cluster { return try cluster.command(args) }
        try connect()
        let raw: UnsafeMutableRawPointer? = withArgv(args) { argc, argv, lens in
            redisCommandArgv(context, argc, argv, lens)
        }
        let reply = try takeReply(raw)
        try checkPrimary([reply])
        return reply
    }

    /// Like `command`, with a longer socket timeout for a command that blocks
    /// in Redis (BLPOP) for up to `blockingMs`.
    public func blockingCommand(_ args: [String], blockingMs: Int) throws -> RedisReply {
        if let cluster { return try cluster.command(args, blockingMs: blockingMs) }
        return try blocking(blockingMs) { try exchange([args]) }[0]
    }

    /// Sends a blocking command (BLPOP, up to `blockingMs`) and `then` in one
    /// write, and reads both replies. Redis holds `then` until the blocking
    /// command is answered and runs it at once after: whatever it does costs
    /// no round trip of its own (FetchLoop's fetch behind its wait).
    /// On a cluster, the two go one after the other, each to its node.
    public func blockingPipeline(_ blocking: [String], then next: [String], blockingMs: Int) throws -> (RedisReply, RedisReply) {
        if let cluster { return (try cluster.command(blocking, blockingMs: blockingMs), try cluster.command(next)) }
        let replies = try self.blocking(blockingMs) { try exchange([blocking, next]) }
        return (replies[0], replies[1])
    }

    /// Runs `body` on a connected context whose socket timeout allows a
    /// command to block up to `blockingMs`. Connecting comes first, so that a
    /// reconnect (a failover) cannot leave the new context with the short
    /// timeout; the replies are checked for a demoted primary after.
    private func blocking(_ blockingMs: Int, _ body: () throws -> [RedisReply]) throws -> [RedisReply] {
        try connect()
        redisSetTimeout(context, RedisConnection.timeval(ms: blockingMs + commandTimeoutMs))
        defer { if let c = context { redisSetTimeout(c, RedisConnection.timeval(ms: commandTimeoutMs)) } }
        let replies = try body()
        try checkPrimary(replies)
        return replies
    }

    /// Sends several commands in one write and reads all replies.
    /// On a cluster, the commands go one by one, each to its node.
    public func pipeline(_ commands: [[String]]) throws -> [RedisReply] {
        if let cluster { return try cluster.pipeline(commands) }
        try connect()
        let replies = try exchange(commands)
        try checkPrimary(replies)
        return replies
    }

    /// Writes the commands in one go and reads their replies, on the context
    /// as it is (connected by the caller).
    private func exchange(_ commands: [[String]]) throws -> [RedisReply] {
        for cmd in commands {
            let rc = withArgv(cmd) { argc, argv, lens in redisAppendCommandArgv(context, argc, argv, lens) }
            guard rc == REDIS_OK else { throw failConnection() }
        }
        var replies: [RedisReply] = []
        replies.reserveCapacity(commands.count)
        for _ in commands {
            var raw: UnsafeMutableRawPointer?
            guard redisGetReply(context, &raw) == REDIS_OK else { throw failConnection() }
            replies.append(try takeReply(raw))
        }
        return replies
    }

    /// Runs a script by its SHA, loading it first if Redis does not know it
    /// (after a restart or a SCRIPT FLUSH).
    public func evalScript(_ script: LuaScript, keys: [String], args: [String]) throws -> RedisReply {
        let tail = [String(keys.count)] + keys + args
        let reply = try command(["EVALSHA", script.sha1] + tail)
        if case .error(let e) = reply, e.hasPrefix("NOSCRIPT") {
            return try command(["EVAL", script.source] + tail)
        }
        return reply
    }

    private func takeReply(_ raw: UnsafeMutableRawPointer?) throws -> RedisReply {
        guard let raw else { throw failConnection() }
        defer { freeReplyObject(raw) }
        return RedisReply(raw.assumingMemoryBound(to: redisReply.self))
    }

    /// A READONLY reply means the node was demoted: the connection is
    /// dropped (the next call connects again and checks the role) and the
    /// call fails like an outage, so callers back off instead of retrying
    /// against a replica.
    private func checkPrimary(_ replies: [RedisReply]) throws {
        for case .error(let message) in replies where RedisProblem.meansNotPrimary(message) {
            disconnect()
            throw RedisError.connection("\(target.address) is no longer the primary: \(message)")
        }
    }

    private func failConnection() -> RedisError {
        let message = context.map { RedisConnection.errorText($0.pointee) } ?? "not connected"
        let timedOut = context.map { $0.pointee.err == REDIS_ERR_IO && errno == EAGAIN } ?? false
        disconnect()
        return timedOut ? .timeout : .connection(message)
    }

    static func errorText(_ c: redisContext) -> String {
        withUnsafeBytes(of: c.errstr) { raw in
            let bytes = raw.prefix(while: { $0 != 0 })
            let text = String(decoding: bytes, as: UTF8.self)
            return text.isEmpty ? "connection lost" : text
        }
    }

    static func timeval(ms: Int) -> Glibc.timeval {
        Glibc.timeval(tv_sec: ms / 1000, tv_usec: (ms % 1000) * 1000)
    }
}

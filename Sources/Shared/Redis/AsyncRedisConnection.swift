import CHiredis
import Synchronization
import CLibevent

/// A non-blocking Redis connection driven by one libevent loop (hiredis' async
/// API with its libevent adapter). Used from that loop's thread only.
///
/// What it adds to hiredis 0.14:
/// - a command timeout (hiredis 0.14 has none): replies come back in order, so
///   the deadlines of commands in flight form a FIFO; when the oldest passes,
///   the connection is dropped, which fails every pending command at once;
/// - reconnection with capped backoff; while Redis is down, commands fail at
///   once instead of queueing up;
/// - EVALSHA with a transparent fallback to EVAL after NOSCRIPT;
/// - a handshake on every connect: AUTH and SELECT, then ROLE. The connection
///   is only "up" once all passed: a wrong password or a node that is a
///   replica is a named problem (`lastProblem`, `onProblem`), and the
///   connection is dropped and tried again with backoff;
/// - a READONLY reply (the node was demoted in a failover) drops the
///   connection, so that the next one finds the primary again (and checks it);
/// - on Redis Cluster, a connection per primary and each command sent by its
///   key's slot (AsyncClusterRouter), unless it was made for `anyNode`.
public final class AsyncRedisConnection {
    public let endpoint: RedisEndpoint
    /// The node connected to: the endpoint, or the primary its sentinels named.
    private var target: RedisEndpoint
    /// SentinelWatch.epoch when the connection was made.
    private var sentinelEpoch = 0
    public let commandTimeoutMs: Int64
    /// Called on the loop thread when the connection comes up (true) or goes down (false).
    public var onStateChange: ((Bool) -> Void)?
    /// Called on the loop thread with each problem that made the connection
    /// unusable (refused handshake, replica, READONLY, timeout).
    public var onProblem: ((RedisError) -> Void)?
    /// Why the connection is not up, as Redis or the network said it; nil while up.
    public var lastProblem: RedisError? { cluster.map { $0.lastProblem } ?? problem }
    private var problem: RedisError? = .connection("not connected yet")

    let loop: LibeventLoop
    private let base: OpaquePointer
    /// On Redis Cluster: the connections to each primary, which commands go through.
    private var cluster: AsyncClusterRouter?
    /// Closed for good (`close`): no reconnecting.
    private var closed = false
    private var context: UnsafeMutablePointer<redisAsyncContext>?
    /// The handshake passed: commands may be sent.
    private var connected = false
    /// Set from a hiredis callback: the connection is dropped on the next tick
    /// (freeing it inside the callback would pull it from under hiredis).
    private var dropReason: RedisError?
    private var deadlines = DeadlineQueue()
    private var timer: OpaquePointer?
    private var reconnectAt: Int64 = 0
    private var reconnectDelayMs: Int64 = 50
    private var failure: RedisError = .connection("connection lost")

    static let maxReconnectDelayMs: Int64 = 1000
    static let tickMs = 20
    /// Bumped when a connection comes back after failed attempts. Every
    /// connection of the process that is waiting out its backoff then tries
    /// at once: Redis is back for one event loop, so it is back for all, and
    /// no request should meet a 503 for up to a second after /readyz said 200.
    static let recoveries = Atomic<Int>(0)
    private var recoveriesSeen = 0

    /// `anyNode`: on Redis Cluster, connect to any one primary (another after
    /// each drop) rather than route commands by slot: for pub/sub, whose
    /// messages every node of a cluster carries.
    public init(endpoint: RedisEndpoint, loop: LibeventLoop, commandTimeoutMs: Int64, anyNode: Bool = false) {
        self.endpoint = endpoint
        target = endpoint
        self.loop = loop
        self.base = loop.base
        self.commandTimeoutMs = commandTimeoutMs
        if endpoint.cluster != nil && !anyNode { cluster = AsyncClusterRouter(owner: self) }
    }

    public var isUp: Bool { cluster?.isUp ?? connected }
    /// Connecting now (TCP or handshake under way): a command sent now fails,
    /// one sent in a moment may not.
    var isConnecting: Bool { context != nil && !connected && dropReason == nil }

    /// Connects and starts the timer that enforces timeouts and reconnects.
    public func start() {
        if let cluster { return cluster.start() }
        let arg = Unmanaged.passUnretained(self).toOpaque()
        timer = event_new(base, -1, Int16(EV_PERSIST), { _, _, arg in
            Unmanaged<AsyncRedisConnection>.fromOpaque(arg!).takeUnretainedValue().tick()
        }, arg)
        var tv = timeval(tv_sec: 0, tv_usec: AsyncRedisConnection.tickMs * 1000)
        event_add(timer, &tv)
        connect()
    }

    /// Sends a command; `callback` runs on the loop thread with its reply. An
    /// error reply arrives as `.failure(.server)`, so that no caller mistakes
    /// it for data (an empty hash during LOADING is not "no such job").
    /// When Redis is unreachable the callback runs before `send` returns.
    public func send(_ args: [String], _ callback: @escaping (Result<RedisReply, RedisError>) -> Void) {
        sendRaw(args) { result in
            if case .success(.error(let message)) = result { return callback(.failure(.server(message))) }
            callback(result)
        }
    }

    /// Like `send`, with error replies passed through as `.success(.error)`.
    func sendRaw(_ args: [String], handshake: Bool = false, _ callback: @escaping (Result<RedisReply, RedisError>) -> Void) {
        if let cluster { return cluster.send(args, callback) }
        guard let ac = context, connected || handshake, dropReason == nil else {
            callback(.failure(problem ?? .connection("redis is unavailable")))
            return
        }
        let box = Unmanaged.passRetained(PendingCommand(owner: self, callback: callback)).toOpaque()
        let rc = withArgv(args) { argc, argv, lens in
            redisAsyncCommandArgv(ac, { ac, reply, privdata in
                let pending = Unmanaged<PendingCommand>.fromOpaque(privdata!).takeRetainedValue()
                pending.complete(reply?.assumingMemoryBound(to: redisReply.self))
            }, box, argc, argv, lens)
        }
        if rc != REDIS_OK {
            Unmanaged<PendingCommand>.fromOpaque(box).release()
            callback(.failure(.connection("redis is unavailable")))
            return
        }
        deadlines.push(Clock.monotonicMillis() + commandTimeoutMs)
        // Write now rather than on the next writable event: a request's
        // command reaches Redis one loop pass (and two epoll_ctl calls) sooner.
        // Never from inside a hiredis callback: a failed write there frees the
        // context under hiredis' feet (0.14 does not defer it); the write event
        // hiredis armed sends the command a moment later instead.
        if connected && ac.pointee.c.flags & REDIS_IN_CALLBACK == 0 { redisAsyncHandleWrite(ac) }
    }

    /// EVALSHA, falling back to EVAL (which also caches the script) on NOSCRIPT.
    public func evalScript(_ script: LuaScript, keys: [String], args: [String],
                           _ callback: @escaping (Result<RedisReply, RedisError>) -> Void) {
        let tail = [String(keys.count)] + keys + args
        sendRaw(["EVALSHA", script.sha1] + tail) { [weak self] result in
            if case .success(.error(let e)) = result, e.hasPrefix("NOSCRIPT"), let self {
                self.sendRaw(["EVAL", script.source] + tail, callback)
            } else {
                callback(result)
            }
        }
    }

    /// Subscribes to `channel` (the connection is then for pub/sub only) and
    /// calls `onMessage` with each message, after `onSubscribed` once Redis
    /// confirmed the subscription. After a reconnect, subscribe again from
    /// `onStateChange`: messages published while down are lost.
    public func subscribe(_ channel: String, onSubscribed: @escaping () -> Void = {}, _ onMessage: @escaping (String) -> Void) {
        guard let ac = context else { return }
        let box = Unmanaged.passRetained(Subscription(onSubscribed: onSubscribed, onMessage: onMessage)).toOpaque()
        let rc = withArgv(["SUBSCRIBE", channel]) { argc, argv, lens in
            redisAsyncCommandArgv(ac, { _, reply, privdata in
                // hiredis calls back for every message, and once with NULL when
                // the connection goes away: only then is the box released.
                guard let reply else {
                    Unmanaged<Subscription>.fromOpaque(privdata!).release()
                    return
                }
                let sub = Unmanaged<Subscription>.fromOpaque(privdata!).takeUnretainedValue()
                if case .array(let parts) = RedisReply(reply.assumingMemoryBound(to: redisReply.self)), parts.count == 3 {
                    if parts[0].string == "message", let payload = parts[2].string { sub.onMessage(payload) }
                    if parts[0].string == "subscribe" { sub.onSubscribed() }
                }
            }, box, argc, argv, lens)
        }
        if rc != REDIS_OK { Unmanaged<Subscription>.fromOpaque(box).release() }
    }

    /// Drops the connection for good (a cluster node no longer in the map);
    /// commands in flight fail.
    public func close() {
        closed = true
        cluster?.close()
        if let timer { event_free(timer) }
        timer = nil
        if let ac = context {
            redisAsyncFree(ac)
            if context != nil { didDisconnect() }
        }
    }

    // MARK: - connection life

    private func connect() {
        sentinelEpoch = SentinelWatch.epoch.load(ordering: .acquiring)
        do {
            target = try endpoint.resolved()
        } catch {
            let problem = (error as? RedisError) ?? .connection("\(error)")
            self.problem = problem
            failure = problem
            onProblem?(problem)
            return scheduleReconnect()
        }
        let local: String?
        do {
            local = try target.localSocket()
        } catch {
            problem = (error as? RedisError) ?? .connection("\(error)")
            return scheduleReconnect()
        }
        let made = local.map { redisAsyncConnectUnix($0) } ?? redisAsyncConnect(target.host, Int32(target.port))
        guard let ac = made else { return scheduleReconnect() }
        if ac.pointee.c.err != 0 {
            problem = .connection("\(target.address): \(RedisConnection.errorText(ac.pointee.c))")
            redisAsyncFree(ac)
            return scheduleReconnect()
        }
        ac.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        _ = redisLibeventAttach(ac, base)
        redisAsyncSetConnectCallback(ac) { ac, status in
            let me = AsyncRedisConnection.owner(of: ac)
            // Connected: the handshake (sent already) decides whether the connection is up.
            if status != REDIS_OK { me?.connectFailed(ac) }
        }
        redisAsyncSetDisconnectCallback(ac) { ac, _ in
            AsyncRedisConnection.owner(of: ac)?.didDisconnect()
        }
        context = ac
        failure = .connection("connection lost")
        handshake(target.handshake + [["ROLE"]])
    }

    /// Sends AUTH, SELECT and ROLE in order; the connection is up once the
    /// last one answered that this node is the primary.
    private func handshake(_ commands: [[String]]) {
        guard let command = commands.first else { return }
        sendRaw(command, handshake: true) { [weak self] result in
            guard let self else { return }
            switch result {
            case .failure:
                break  // the connection went away; the disconnect handles it
            case .success(.error(let message)) where command[0] != "ROLE" || !RedisProblem.roleMayBeDenied(message):
                self.refuse(.connection(self.target.handshakeFailure(command, message)))
            case .success(let reply):
                if command[0] == "ROLE" {
                    if let why = RedisProblem.refusal(ofRole: reply, address: self.target.address) {
                        self.refuse(.connection(why))
                    } else {
                        self.didConnect()
                    }
                } else {
                    self.handshake(Array(commands.dropFirst()))
                }
            }
        }
    }

    /// The node cannot be used (handshake refused, not the primary, READONLY):
    /// named, reported, and the connection dropped on the next tick.
    private func refuse(_ problem: RedisError) {
        guard dropReason == nil else { return }
        dropReason = problem
        self.problem = problem
        failure = problem
        onProblem?(problem)
    }

    /// A reply said the node is no longer the primary.
    fileprivate func lostPrimary(_ message: String) {
        refuse(.server(message))
    }

    private static func owner(of ac: UnsafePointer<redisAsyncContext>?) -> AsyncRedisConnection? {
        guard let data = ac?.pointee.data else { return nil }
        return Unmanaged<AsyncRedisConnection>.fromOpaque(data).takeUnretainedValue()
    }

    private func didConnect() {
        connected = true
        problem = nil
        if reconnectDelayMs > 50 {
            recoveriesSeen = AsyncRedisConnection.recoveries.add(1, ordering: .releasing).newValue
        }
        reconnectDelayMs = 50
        onStateChange?(true)
    }

    /// hiredis frees the context itself after this callback.
    private func didDisconnect() {
        let wasConnected = connected
        context = nil
        connected = false
        problem = dropReason ?? failure
        // Over TLS the relay knows why the connection ended (a refused certificate).
        if dropReason == nil, !wasConnected, target.tls != nil, let why = TLSRelay.shared.lastFailure(for: target) {
            problem = .connection("TLS to \(why)")
        }
        dropReason = nil
        deadlines.removeAll()
        scheduleReconnect()
        if wasConnected { onStateChange?(false) }
    }

    private func scheduleReconnect() {
        guard !closed else { return reconnectAt = .max }
        reconnectAt = Clock.monotonicMillis() + reconnectDelayMs
        reconnectDelayMs = min(reconnectDelayMs * 2, AsyncRedisConnection.maxReconnectDelayMs)
    }

    /// The TCP connect failed (refused, unreachable): hiredis frees the context.
    private func connectFailed(_ ac: UnsafePointer<redisAsyncContext>?) {
        let text = ac.map { RedisConnection.errorText($0.pointee.c) } ?? "connection failed"
        failure = .connection("\(target.address): \(text)")
        onProblem?(failure)
        didDisconnect()
    }

    private func tick() {
        let now = Clock.monotonicMillis()
        if endpoint.sentinel != nil, SentinelWatch.epoch.load(ordering: .acquiring) != sentinelEpoch {
            if context != nil {
                // A failover started, or the sentinels named a new primary
                // (SentinelWatch): leave this one.
                refuse(.connection("Sentinel failover: leaving \(target.address)"))
            } else {
                // Waiting to reconnect: try the new primary now, not after the backoff.
                sentinelEpoch = SentinelWatch.epoch.load(ordering: .acquiring)
                reconnectAt = now
                reconnectDelayMs = 50
            }
        }
        if let ac = context, let reason = dropReason {
            // Refused handshake, replica, READONLY: try again after the backoff.
            failure = reason
            deadlines.removeAll()
            redisAsyncFree(ac)
            if context != nil { didDisconnect() }
        } else if let ac = context, let oldest = deadlines.first, oldest <= now {
            // Redis stopped answering: drop the connection so that every waiting
            // request fails now rather than piling up. Reconnect right away.
            failure = .timeout
            onProblem?(.timeout)
            deadlines.removeAll()
            redisAsyncFree(ac)
            if context != nil { didDisconnect() }
            reconnectAt = now
        }
        if context == nil && now < reconnectAt {
            let recoveries = AsyncRedisConnection.recoveries.load(ordering: .acquiring)
            if recoveries != recoveriesSeen {
                recoveriesSeen = recoveries
                reconnectAt = now
            }
        }
        if context == nil && now >= reconnectAt { connect() }
    }

    fileprivate func replyArrived() { deadlines.popFirst() }
    fileprivate var failureReason: RedisError { failure }
}

/// One command in flight: its callback, kept alive until hiredis calls back.
private final class PendingCommand {
    let owner: AsyncRedisConnection
    let callback: (Result<RedisReply, RedisError>) -> Void

    init(owner: AsyncRedisConnection, callback: @escaping (Result<RedisReply, RedisError>) -> Void) {
        self.owner = owner
        self.callback = callback
    }

    func complete(_ reply: UnsafeMutablePointer<redisReply>?) {
        guard let reply else { return callback(.failure(owner.failureReason)) }
        owner.replyArrived()
        let parsed = RedisReply(reply)
        if case .error(let message) = parsed, RedisProblem.meansNotPrimary(message) { owner.lostPrimary(message) }
        callback(.success(parsed))
    }
}

private final class Subscription {
    let onSubscribed: () -> Void
    let onMessage: (String) -> Void
    init(onSubscribed: @escaping () -> Void, onMessage: @escaping (String) -> Void) {
        self.onSubscribed = onSubscribed
        self.onMessage = onMessage
    }
}

/// Deadlines of the commands in flight, oldest first.
struct DeadlineQueue {
    private var items: [Int64] = []
    private var head = 0

    var first: Int64? { head < items.count ? items[head] : nil }

    mutating func push(_ d: Int64) { items.append(d) }

    mutating func popFirst() {
        guard head < items.count else { return }
        head += 1
        if head > 1024 && head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
    }

    mutating func removeAll() {
        items.removeAll(keepingCapacity: true)
        head = 0
    }
}

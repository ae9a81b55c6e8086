import Logging
import Shared

/// One API event loop on its own thread: a listening socket shared with the
/// other loops through SO_REUSEPORT, the connections it accepted, its own
/// async Redis connection (on which the commands of concurrent requests
/// pipeline by themselves), and a pub/sub connection that tells waiting
/// requests when their job finished. With SPOOL_MIN_REPLICAS, writes that
/// clients wait on go through a connection of their own, so that its WAITs
/// never hold up reads.
final class EventLoop {
    let loop: LibeventLoop
    let redis: AsyncRedisConnection
    let events: AsyncRedisConnection
    /// Enqueue, cancel and retry, when they wait for replicas (else nil: `redis`).
    let writes: AsyncRedisConnection?
    let router: Router
    private(set) var listener: HTTPListener!

    /// `index` 0 is the first loop: its listener checks that the address is free.
    init(index: Int, config: APIConfig, auth: AuthStore?, tls: TLSServerContext?, logger: Logger, problems: RedisProblemLog,
         serverErrors: ServerErrorLog) throws {
        let loop = try LibeventLoop()
        self.loop = loop
        redis = AsyncRedisConnection(endpoint: config.redis, loop: loop, commandTimeoutMs: config.redisTimeoutMs)
        // On Redis Cluster, any node carries every message published.
        events = AsyncRedisConnection(endpoint: config.redis, loop: loop, commandTimeoutMs: config.redisTimeoutMs, anyNode: true)
        writes = config.minReplicas > 0
            ? AsyncRedisConnection(endpoint: config.redis, loop: loop, commandTimeoutMs: config.redisTimeoutMs) : nil
        let acknowledger = ReplicaAcknowledger(redis: writes ?? redis, replicas: config.minReplicas,
                                               timeoutMs: Int(config.replicaAckTimeoutMs))
        let waiters = JobWaiters(loop: loop)
        let schema = KeySchema(prefix: config.prefix)
        let feeds = EventFeeds(loop: loop, redis: redis, schema: schema, keepaliveMs: config.streamKeepaliveMs,
                               maxBufferedBytes: config.streamMaxBufferedBytes)
        let coalescer = EnqueueCoalescer(schema: schema, acknowledger: acknowledger)
        router = Router(redis: redis, acknowledger: acknowledger, waiters: waiters, feeds: feeds, coalescer: coalescer,
                        auth: auth.map(LoopAuth.init(store:)), config: config, logger: logger, problems: problems, serverErrors: serverErrors)
        listener = try HTTPListener(loop: loop, address: config.address, limits: config.httpLimits, handler: router,
                                    setting: config.addressOrigin, exclusive: index == 0, tls: tls)
        listener.onRefused = { [serverErrors] in serverErrors.connectionRefused() }
        redis.onStateChange = { [router] up in router.redisStateChanged(up: up) }
        redis.onProblem = { problems.report($0, context: "redis connection unusable; retrying") }
        events.onProblem = { problems.report($0, context: "redis connection unusable; retrying") }
        writes?.onProblem = { problems.report($0, context: "redis connection unusable; retrying") }
        let channel = router.schema.finishedChannel
        let eventsChannel = router.schema.eventsChannel
        events.onStateChange = { [unowned events, router] up in
            guard up else { return }
            // Recheck once the subscription holds: a job that finished (or a
            // log that grew) while the channel was down would otherwise be missed.
            events.subscribe(channel, onSubscribed: { router.recheckWaiters() }) { id in router.waiters.finished(id) }
            events.subscribe(eventsChannel, onSubscribed: { router.feeds.recheckAll() }) { name in router.feeds.notify(name) }
        }
    }

    /// Runs the loop until `stop` is called (from any thread).
    func run() {
        redis.start()
        events.start()
        writes?.start()
        loop.run()
    }

    /// Runs `block` on this loop's thread (from any thread).
    func perform(_ block: @escaping () -> Void) { loop.perform(block) }

    /// Shutdown, on the loop thread: the listener closes, every waiting
    /// long-poll is answered with its job's current state, idle keep-alive
    /// connections close and busy ones close after their response.
    func closeForShutdown() {
        listener.closeConnections()
        router.answerAllWaiters()
        router.feeds.closeAll()
    }

    func stop() { loop.stop() }
}

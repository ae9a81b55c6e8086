import CLibevent
import Logging
import Shared

/// One API event loop on its own thread: a listening socket shared with the
/// other loops through SO_REUSEPORT, the connections it accepted, its own
/// async Redis connection (on which the commands of concurrent requests
/// pipeline by themselves), and a pub/sub connection that tells waiting
/// requests when their job finished.
final class EventLoop {
    let base: OpaquePointer
    let redis: AsyncRedisConnection
    let events: AsyncRedisConnection
    let router: Router
    private(set) var listener: HTTPListener!

    init(config: APIConfig, logger: Logger) throws {
        guard let base = EventBase.make() else { throw ConfigError("could not create an event loop") }
        self.base = base
        redis = AsyncRedisConnection(endpoint: config.redis, base: base, commandTimeoutMs: config.redisTimeoutMs)
        events = AsyncRedisConnection(endpoint: config.redis, base: base, commandTimeoutMs: config.redisTimeoutMs)
        let waiters = JobWaiters(base: base)
        let coalescer = EnqueueCoalescer(redis: redis, schema: KeySchema(prefix: config.prefix))
        router = Router(redis: redis, waiters: waiters, coalescer: coalescer, config: config, logger: logger)
        listener = try HTTPListener(base: base, address: config.address, limits: config.httpLimits, handler: router,
                                    setting: "SPOOL_API_ADDR")
        redis.onStateChange = { [router] up in router.redisStateChanged(up: up) }
        let channel = router.schema.finishedChannel
        events.onStateChange = { [unowned events, router] up in
            guard up else { return }
            // Recheck once the subscription holds: a job that finished while
            // the channel was down would otherwise be missed.
            events.subscribe(channel, onSubscribed: { router.recheckWaiters() }) { id in router.waiters.finished(id) }
        }
    }

    /// Runs the loop until `stop` is called (from any thread).
    func run() {
        redis.start()
        events.start()
        event_base_dispatch(base)
    }

    func stopAccepting() { listener.stopAccepting() }

    func stop() { event_base_loopexit(base, nil) }
}

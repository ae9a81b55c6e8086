import Logging
import Shared

/// What every part of one worker process shares: its identity and settings,
/// the handlers, the running jobs, counters and the stop signals.
final class WorkerContext {
    let id: String
    let config: WorkerConfig
    let schema: KeySchema
    let handlers: [String: JobHandler]
    let running = RunningJobs()
    let counters = WorkerCounters()
    /// Set at shutdown: fetch loops take no new jobs.
    let stopFetching = StopFlag()
    let redisHealth: RedisHealth
    let dueTimer = DueTimer()
    /// Batches the successes reported in the first queue with the claims of
    /// the loops' next jobs.
    let completions: CompletionBatcher
    let logger: Logger
    let startedAt = Clock.nowMillis()

    init(id: String, config: WorkerConfig, handlers: [String: JobHandler], logger: Logger) {
        self.id = id
        self.config = config
        self.schema = KeySchema(prefix: config.prefix)
        self.handlers = handlers
        self.logger = logger
        self.redisHealth = RedisHealth(logger: logger)
        self.completions = CompletionBatcher(queue: config.queues[0], maxInFlight: config.siblingProcesses > 1 ? 1 : 2)
    }

    func newConnection() -> RedisConnection {
        RedisConnection(endpoint: config.redis, commandTimeoutMs: Int(config.redisTimeoutMs))
    }

    /// Log metadata that identifies a job in every line about it.
    func metadata(_ job: Job, attempt: Int) -> Logger.Metadata {
        ["job_id": "\(job.id)", "queue": "\(job.id.queue)", "type": "\(job.type)",
         "attempt": .stringConvertible(attempt), "worker_id": "\(id)"]
    }
}

/// Logs a Redis outage once per process (not once per thread and retry), and
/// its end once; a change of cause during an outage (the network came back but
/// the password is wrong, the node turned replica) is logged too.
final class RedisHealth {
    private let lock = Lock()
    private var down = false
    private var downKind = ""
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func failed(_ error: Error) {
        let kind = RedisProblem.kind(of: error)
        let news = lock.locked { () -> Bool in
            defer { down = true; downKind = kind }
            return !down || downKind != kind
        }
        WorkerMetrics.redisError(kind: kind)
        if news {
            logger.error("redis unavailable; retrying with backoff", metadata: ["error": "\(error)", "kind": "\(kind)"])
        }
    }

    func succeeded() {
        let wasDown = lock.locked { () -> Bool in
            defer { down = false }
            return down
        }
        if wasDown {
            WorkerMetrics.redisReconnected()
            logger.notice("redis reachable again; resuming")
        }
    }

    var isDown: Bool { lock.locked { down } }

    /// Runs `call` until it succeeds, through an outage (logged as above),
    /// with capped backoff between tries. Past `giveUpAt` (monotonic ms) it
    /// stops: `gaveUp` gets the last error, and the answer is nil.
    func retrying<Output>(until giveUpAt: Int64, _ call: () throws -> Output, gaveUp: (Error) -> Void) -> Output? {
        var failures = 0
        while true {
            do {
                let output = try call()
                succeeded()
                return output
            } catch {
                failures += 1
                failed(error)
                if Clock.monotonicMillis() > giveUpAt {
                    gaveUp(error)
                    return nil
                }
                Clock.sleep(milliseconds: Backoff.reconnectDelay(failures: failures))
            }
        }
    }
}

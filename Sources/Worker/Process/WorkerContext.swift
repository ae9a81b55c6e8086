import Logging
import Shared
import Synchronization

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
    /// Jobs parked behind limits in this worker's queues (LimitGate).
    let parked = ParkedLimits()
    /// One group commit per limit this process has used (LimitGate).
    private let limitBatchers = Mutex<[String: LimitBatcher]>([:])
    func limitBatcher(_ limit: String) -> LimitBatcher {
        limitBatchers.withLock { all in
            if let b = all[limit] { return b }
            let b = LimitBatcher()
            all[limit] = b
            return b
        }
    }
    /// The limits defined in Redis, read every heartbeat (groups' caps), and
    /// whether any is a group's cap.
    private let definedLimitNames = Mutex<(names: Set<String>, groupCaps: Bool)>(([], false))
    var definedLimits: Set<String> {
        get { definedLimitNames.withLock { $0.names } }
        set {
            let caps = newValue.contains { $0.hasPrefix(LimitGate.groupLimitPrefix) }
            definedLimitNames.withLock { $0 = (newValue, caps) }
        }
    }
    var groupCapsDefined: Bool { definedLimitNames.withLock { $0.groupCaps } }
    /// Off once Redis refused a call across slots (a server in cluster mode
    /// reached as one Redis): limits are then called apart, as on Cluster.
    private let callLimitsRefused = Mutex(false)
    var limitsInCallAllowed: Bool { clusterWake == nil && !callLimitsRefused.withLock { $0 } }
    /// Turns the in-call path off; true only for the call that turned it off
    /// (which logs it once).
    func refuseLimitsInCall() -> Bool {
        callLimitsRefused.withLock { refused in
            defer { refused = true }
            return !refused
        }
    }
    /// On Redis Cluster, where idle loops hear new jobs (else they BLPOP themselves).
    let clusterWake: ClusterWakeBoard?
    /// Batches each queue's successes (in the first queue, with the claims
    /// of the loops' next jobs), by queue name.
    let completions: [String: CompletionBatcher]
    let logger: Logger
    let startedAt = Clock.nowMillis()

    init(id: String, config: WorkerConfig, handlers: [String: JobHandler], logger: Logger) {
        self.id = id
        self.config = config
        self.schema = KeySchema(prefix: config.prefix)
        self.handlers = handlers
        self.logger = logger
        self.redisHealth = RedisHealth(logger: logger)
        clusterWake = config.redis.cluster == nil ? nil : ClusterWakeBoard()
        var batchers: [String: CompletionBatcher] = [:]
        for (index, queue) in config.queues.enumerated() {
            batchers[queue] = CompletionBatcher(queue: queue, claimsNextJobs: index == 0,
                                                maxInFlight: config.siblingProcesses > 1 ? 1 : 2)
        }
        self.completions = batchers
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

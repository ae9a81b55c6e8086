import Shared

/// Every setting of spool-worker, declared once (see `Setting`): the command
/// line, `--help` and the README's table come from here; `WorkerConfig` reads them.
enum WorkerSettings {
    static let queues = Setting(
        "queues", env: "SPOOL_QUEUES", default: "`default`", "Queues to take jobs from, comma-separated, tried in this order")
    static let concurrency = Setting(
        "concurrency", env: "SPOOL_CONCURRENCY", default: "8", range: 1...1024,
        "Jobs run at once (threads, each with its own Redis connection)")
    static let handler = Setting(
        "handler", env: "SPOOL_HANDLERS", default: "–", repeatable: true,
        "`TYPE=COMMAND`: run COMMAND for each job of TYPE; `TYPE=persistent:COMMAND`: one long-lived COMMAND takes jobs as JSON lines; `TYPE=http://host:port/path`: POST each job there (flag repeatable; env comma-separated)")
    static let handlersJSON = Setting(
        nil, env: "SPOOL_HANDLERS_JSON", default: "–", "`{\"TYPE\": \"COMMAND\", ...}`, for commands with commas or quotes")
    static let handlersFile = Setting(
        "handlers-file", env: "SPOOL_HANDLERS_FILE", default: "–", "A file holding that JSON object")
    static let limitsByType = Setting(
        "limit-by-type", env: "SPOOL_LIMITS_BY_TYPE", default: "–",
        "`TYPE=LIMIT,...`: jobs of TYPE that name no `limit` take this one (`PUT /v1/limits/{name}`)")
    static let leaseMs = Setting(
        "lease-ms", env: "SPOOL_LEASE_MS", default: "30000", range: 1000...86_400_000, unit: "milliseconds",
        "Lease of a running job; a dead worker's jobs return after it")
    static let heartbeatMs = Setting(
        "heartbeat-ms", env: "SPOOL_HEARTBEAT_MS", default: "min(5000, lease/3)", range: 100...3_600_000, unit: "milliseconds",
        "Lease extension, registry and recovery interval; below lease/2")
    static let shutdownGraceMs = Setting(
        "shutdown-grace-ms", env: "SPOOL_SHUTDOWN_GRACE_MS", default: "25000", range: 0...3_600_000, unit: "milliseconds",
        "Time running jobs get to finish after SIGTERM")
    static let killGraceMs = Setting(
        "kill-grace-ms", env: "SPOOL_KILL_GRACE_MS", default: "min(5000, lease/6)", range: 0...600_000, unit: "milliseconds",
        "SIGTERM → SIGKILL delay for a handler command")
    static let maxOutputBytes = Setting(
        "max-output-bytes", env: "SPOOL_MAX_OUTPUT_BYTES", default: "1048576", range: 1024...(64 << 20), unit: "bytes",
        "Largest stdout (result) of a handler command")
    static let persistentMaxJobs = Setting(
        "persistent-max-jobs", env: "SPOOL_PERSISTENT_MAX_JOBS", default: "1000", range: 1...100_000_000,
        "A `persistent:` handler process is recycled (EOF on stdin, then the kill grace) after this many jobs")
    static let persistentMaxRSS = Setting(
        "persistent-max-rss-mb", env: "SPOOL_PERSISTENT_MAX_RSS_MB", default: "off", range: 1...1_048_576, unit: "MiB",
        "A `persistent:` handler process using more memory than this after a job is recycled")
    static let deadTTL = Setting(
        "dead-ttl-s", env: "SPOOL_DEAD_TTL_S", default: "604800", range: 1...31_536_000, unit: "seconds",
        "How long dead jobs are kept")
    static let deadMax = Setting(
        "dead-max", env: "SPOOL_DEAD_MAX", default: "10000", range: 1...10_000_000, "Dead jobs kept per queue, oldest dropped first")
    static let eventLogMaxEvents = Setting(
        "event-log-max-events", env: "SPOOL_EVENT_LOG_MAX_EVENTS", default: "10000", range: 10...1_000_000,
        "Entries kept in one job's event log; later chunks and events are dropped (readers get a `dropped` event)")
    static let eventLogMaxBytes = Setting(
        "event-log-max-bytes", env: "SPOOL_EVENT_LOG_MAX_BYTES", default: "4194304", range: 1024...(256 << 20), unit: "bytes",
        "Bytes of chunks and events kept in one job's event log; the same when it is full")
    static let redisTimeoutMs = Setting(
        "redis-timeout-ms", env: "SPOOL_REDIS_TIMEOUT_MS", default: "min(5000, lease/4)", range: 10...60_000, unit: "milliseconds",
        "A Redis command slower than this fails; at most a third of the lease")
    static let processes = Setting(
        "processes", env: "SPOOL_PROCESSES", default: "1", range: 1...256,
        "Run this many worker processes under a supervisor that restarts any that dies (backoff 0.5 s doubling to 30 s while it keeps dying) and forwards SIGTERM")
    static let healthPort = Setting(
        "health-port", env: "SPOOL_HEALTH_PORT", default: "off", range: 1...65535,
        "Serve `/healthz`, `/readyz`, `/metrics` on this port (0.0.0.0; child i of `--processes` uses port + i)")

    /// The worker's own settings, in the order of `--help` and the README.
    static let own = [queues, concurrency, handler, handlersJSON, handlersFile, limitsByType, leaseMs, heartbeatMs, shutdownGraceMs,
                      killGraceMs, maxOutputBytes, persistentMaxJobs, persistentMaxRSS, deadTTL, deadMax, eventLogMaxEvents, eventLogMaxBytes, redisTimeoutMs, processes, healthPort]
    static let all = SharedSettings.all + own
}

import Shared

/// The command line of spool-worker. Each option has an environment variable
/// (named in its help); the flag wins. Values are strings here and checked in
/// the config, so that a flag and its env var get the same checks and messages.
struct WorkerOptions {
    static let options: [CommandLineOptions.Option] = SettingSource.sharedOptions + [
        .init("queues", "Queues to take jobs from, in order of preference [SPOOL_QUEUES, default default]"),
        .init("concurrency", "Jobs run at once (fetch loops) [SPOOL_CONCURRENCY, default 8]"),
        .init("handler", "TYPE=COMMAND: run COMMAND for jobs of TYPE; repeatable [SPOOL_HANDLERS, comma-separated; SPOOL_HANDLERS_JSON, a JSON object]", repeatable: true),
        .init("handlers-file", "A file holding a JSON object {\"TYPE\": \"COMMAND\", ...} [SPOOL_HANDLERS_FILE]"),
        .init("lease-ms", "Lease of a running job; a crashed worker's jobs return after it [SPOOL_LEASE_MS, default 30000]"),
        .init("heartbeat-ms", "Heartbeat interval, below lease/2 [SPOOL_HEARTBEAT_MS, default min(5000, lease/3)]"),
        .init("shutdown-grace-ms", "Time running jobs get to finish after SIGTERM [SPOOL_SHUTDOWN_GRACE_MS, default 25000]"),
        .init("kill-grace-ms", "Time between SIGTERM and SIGKILL for a handler command [SPOOL_KILL_GRACE_MS, default 5000]"),
        .init("max-output-bytes", "Largest stdout (result) of a handler command [SPOOL_MAX_OUTPUT_BYTES, default 1048576]"),
        .init("dead-ttl-s", "Time dead jobs are kept [SPOOL_DEAD_TTL_S, default 604800]"),
        .init("dead-max", "Dead jobs kept per queue, oldest dropped first [SPOOL_DEAD_MAX, default 10000]"),
        .init("redis-timeout-ms", "Redis command timeout [SPOOL_REDIS_TIMEOUT_MS, default 5000]"),
        .init("processes", "Worker processes to run and supervise (restarted when they die) [SPOOL_PROCESSES, default 1]"),
        .init("health-port", "Serve /healthz, /readyz and /metrics on this port (0.0.0.0); unset = off [SPOOL_HEALTH_PORT]"),
    ]

    var queues: String?
    var concurrency: String?
    var handler: [String]
    var handlersFile: String?
    var redisURL: String?
    var prefix: String?
    var leaseMs: String?
    var heartbeatMs: String?
    var shutdownGraceMs: String?
    var killGraceMs: String?
    var maxOutputBytes: String?
    var deadTTL: String?
    var deadMax: String?
    var redisTimeoutMs: String?
    var processes: String?
    var healthPort: String?
    var logLevel: String?
    var logFormat: String?

    init(_ parsed: CommandLineOptions) {
        queues = parsed["queues"]
        concurrency = parsed["concurrency"]
        handler = parsed.all("handler")
        handlersFile = parsed["handlers-file"]
        redisURL = parsed["redis-url"]
        prefix = parsed["prefix"]
        leaseMs = parsed["lease-ms"]
        heartbeatMs = parsed["heartbeat-ms"]
        shutdownGraceMs = parsed["shutdown-grace-ms"]
        killGraceMs = parsed["kill-grace-ms"]
        maxOutputBytes = parsed["max-output-bytes"]
        deadTTL = parsed["dead-ttl-s"]
        deadMax = parsed["dead-max"]
        redisTimeoutMs = parsed["redis-timeout-ms"]
        processes = parsed["processes"]
        healthPort = parsed["health-port"]
        logLevel = parsed["log-level"]
        logFormat = parsed["log-format"]
    }

    static func parseOrExit() -> WorkerOptions {
        WorkerOptions(CommandLineOptions.parseOrExit(program: "spool-worker", abstract: "Spool worker: runs jobs from Redis queues.", options: options))
    }
}

import ArgumentParser

/// The command line of spool-worker. Each flag has an environment variable
/// (named in its help); the flag wins. Values are checked in `WorkerConfig`.
struct WorkerOptions: ParsableArguments {
    @Option(name: .customLong("queues"), help: "Queues to take jobs from, in order of preference [SPOOL_QUEUES, default default]")
    var queues: String?
    @Option(name: .customLong("concurrency"), help: "Jobs run at once (fetch loops) [SPOOL_CONCURRENCY, default 8]")
    var concurrency: String?
    @Option(name: .customLong("handler"), help: "TYPE=COMMAND: run COMMAND for jobs of TYPE; repeatable [SPOOL_HANDLERS, comma-separated]")
    var handler: [String] = []
    @Option(name: .customLong("redis-url"), help: "redis://[:password@]host:port[/db] [REDIS_URL, default redis://127.0.0.1:6379]")
    var redisURL: String?
    @Option(name: .customLong("prefix"), help: "Prefix of every Redis key [SPOOL_PREFIX, default spool]")
    var prefix: String?
    @Option(name: .customLong("lease-ms"), help: "Lease of a running job; a crashed worker's jobs return after it [SPOOL_LEASE_MS, default 30000]")
    var leaseMs: String?
    @Option(name: .customLong("heartbeat-ms"), help: "Heartbeat interval, below lease/2 [SPOOL_HEARTBEAT_MS, default min(5000, lease/3)]")
    var heartbeatMs: String?
    @Option(name: .customLong("shutdown-grace-ms"), help: "Time running jobs get to finish after SIGTERM [SPOOL_SHUTDOWN_GRACE_MS, default 25000]")
    var shutdownGraceMs: String?
    @Option(name: .customLong("kill-grace-ms"), help: "Time between SIGTERM and SIGKILL for a handler command [SPOOL_KILL_GRACE_MS, default 5000]")
    var killGraceMs: String?
    @Option(name: .customLong("max-output-bytes"), help: "Largest stdout (result) of a handler command [SPOOL_MAX_OUTPUT_BYTES, default 1048576]")
    var maxOutputBytes: String?
    @Option(name: .customLong("dead-ttl-s"), help: "Time dead jobs are kept [SPOOL_DEAD_TTL_S, default 604800]")
    var deadTTL: String?
    @Option(name: .customLong("dead-max"), help: "Dead jobs kept per queue, oldest dropped first [SPOOL_DEAD_MAX, default 10000]")
    var deadMax: String?
    @Option(name: .customLong("redis-timeout-ms"), help: "Redis command timeout [SPOOL_REDIS_TIMEOUT_MS, default 5000]")
    var redisTimeoutMs: String?
    @Option(name: .customLong("processes"), help: "Worker processes to run and supervise (restarted when they die) [SPOOL_PROCESSES, default 1]")
    var processes: String?
    @Option(name: .customLong("health-port"), help: "Serve /healthz and /readyz on this port (0.0.0.0); unset = off [SPOOL_HEALTH_PORT]")
    var healthPort: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical [SPOOL_LOG_LEVEL, default info]")
    var logLevel: String?
    @Option(name: .customLong("log-format"), help: "json or text [SPOOL_LOG_FORMAT, default: text on a terminal, else json]")
    var logFormat: String?
}

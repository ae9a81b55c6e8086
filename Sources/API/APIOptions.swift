import Shared

/// The command line of spool-api. Each option has an environment variable
/// (named in its help); the flag wins. Values are strings here and checked in
/// the config, so that a flag and its env var get the same checks and messages.
struct APIOptions {
    static let options: [CommandLineOptions.Option] = SettingSource.sharedOptions + [
        .init("addr", "Listen address host:port [SPOOL_API_ADDR, default 127.0.0.1:8080]"),
        .init("threads", "Event loops, one per core [SPOOL_API_THREADS, default: cores]"),
        .init("redis-timeout-ms", "Redis command timeout; slower answers give 503 [SPOOL_REDIS_TIMEOUT_MS, default 2000]"),
        .init("max-body-bytes", "Largest request body [SPOOL_MAX_BODY_BYTES, default 1048576]"),
        .init("read-timeout-ms", "Time to receive a whole request, and keep-alive idle time [SPOOL_HTTP_READ_TIMEOUT_MS, default 10000]"),
        .init("write-timeout-ms", "Time for a response to drain [SPOOL_HTTP_WRITE_TIMEOUT_MS, default 10000]"),
        .init("max-connections", "Open client connections at most [SPOOL_MAX_CONNECTIONS, default 10000]"),
        .init("max-pending", "Pending jobs per queue before enqueue answers 429; 0 = no limit [SPOOL_MAX_PENDING, default 0]"),
        .init("queue-max-pending", "Per-queue limits overriding --max-pending, e.g. emails=10000,reports=50 [SPOOL_QUEUE_MAX_PENDING]"),
        .init("result-ttl-s", "Default time a finished job is kept [SPOOL_RESULT_TTL_S, default 86400]"),
        .init("max-queues", "Known queues at most; enqueue to a new queue past it answers 409 [SPOOL_MAX_QUEUES, default 1000]"),
        .init("metrics-max-queues", "Queues with per-queue series in /metrics, deepest first [SPOOL_METRICS_MAX_QUEUES, default 200]"),
        .init("access-log", "true: log one JSON line per answered request [SPOOL_ACCESS_LOG, default false]"),
        .init("drain-ms", "After SIGTERM, time /readyz answers 503 while requests are still served [SPOOL_API_DRAIN_MS, default 2000]"),
        .init("shutdown-grace-ms", "After SIGTERM, time until exit, in-flight requests answered [SPOOL_API_SHUTDOWN_GRACE_MS, default 10000]"),
    ]

    var addr: String?
    var redisURL: String?
    var prefix: String?
    var threads: String?
    var redisTimeoutMs: String?
    var maxBodyBytes: String?
    var readTimeoutMs: String?
    var writeTimeoutMs: String?
    var maxConnections: String?
    var maxPending: String?
    var queueMaxPending: String?
    var resultTTL: String?
    var maxQueues: String?
    var metricsMaxQueues: String?
    var accessLog: String?
    var drainMs: String?
    var shutdownGraceMs: String?
    var logLevel: String?
    var logFormat: String?

    init(_ parsed: CommandLineOptions) {
        addr = parsed["addr"]
        redisURL = parsed["redis-url"]
        prefix = parsed["prefix"]
        threads = parsed["threads"]
        redisTimeoutMs = parsed["redis-timeout-ms"]
        maxBodyBytes = parsed["max-body-bytes"]
        readTimeoutMs = parsed["read-timeout-ms"]
        writeTimeoutMs = parsed["write-timeout-ms"]
        maxConnections = parsed["max-connections"]
        maxPending = parsed["max-pending"]
        queueMaxPending = parsed["queue-max-pending"]
        resultTTL = parsed["result-ttl-s"]
        maxQueues = parsed["max-queues"]
        metricsMaxQueues = parsed["metrics-max-queues"]
        accessLog = parsed["access-log"]
        drainMs = parsed["drain-ms"]
        shutdownGraceMs = parsed["shutdown-grace-ms"]
        logLevel = parsed["log-level"]
        logFormat = parsed["log-format"]
    }

    static func parseOrExit() -> APIOptions {
        APIOptions(CommandLineOptions.parseOrExit(program: "spool-api", abstract: "Spool HTTP API: enqueues jobs and reads their state.", options: options))
    }
}

import ArgumentParser

/// The command line of spool-api. Each flag has an environment variable
/// (named in its help); the flag wins. Values are strings here and checked in
/// `APIConfig`, so that a flag and its env var get the same checks and messages.
struct APIOptions: ParsableArguments {
    @Option(name: .customLong("addr"), help: "Listen address host:port [SPOOL_API_ADDR, default 127.0.0.1:8080]")
    var addr: String?
    @Option(name: .customLong("redis-url"), help: "redis://[:password@]host:port[/db] [REDIS_URL, default redis://127.0.0.1:6379]")
    var redisURL: String?
    @Option(name: .customLong("prefix"), help: "Prefix of every Redis key [SPOOL_PREFIX, default spool]")
    var prefix: String?
    @Option(name: .customLong("threads"), help: "Event loops, one per core [SPOOL_API_THREADS, default: cores]")
    var threads: String?
    @Option(name: .customLong("redis-timeout-ms"), help: "Redis command timeout; slower answers give 503 [SPOOL_REDIS_TIMEOUT_MS, default 2000]")
    var redisTimeoutMs: String?
    @Option(name: .customLong("max-body-bytes"), help: "Largest request body [SPOOL_MAX_BODY_BYTES, default 1048576]")
    var maxBodyBytes: String?
    @Option(name: .customLong("read-timeout-ms"), help: "Time to receive a whole request, and keep-alive idle time [SPOOL_HTTP_READ_TIMEOUT_MS, default 10000]")
    var readTimeoutMs: String?
    @Option(name: .customLong("write-timeout-ms"), help: "Time for a response to drain [SPOOL_HTTP_WRITE_TIMEOUT_MS, default 10000]")
    var writeTimeoutMs: String?
    @Option(name: .customLong("max-connections"), help: "Open client connections at most [SPOOL_MAX_CONNECTIONS, default 10000]")
    var maxConnections: String?
    @Option(name: .customLong("max-pending"), help: "Pending jobs per queue before enqueue answers 429; 0 = no limit [SPOOL_MAX_PENDING, default 0]")
    var maxPending: String?
    @Option(name: .customLong("queue-max-pending"), help: "Per-queue limits overriding --max-pending, e.g. emails=10000,reports=50 [SPOOL_QUEUE_MAX_PENDING]")
    var queueMaxPending: String?
    @Option(name: .customLong("result-ttl-s"), help: "Default time a finished job is kept [SPOOL_RESULT_TTL_S, default 86400]")
    var resultTTL: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error, critical [SPOOL_LOG_LEVEL, default info]")
    var logLevel: String?
    @Option(name: .customLong("log-format"), help: "json or text [SPOOL_LOG_FORMAT, default: text on a terminal, else json]")
    var logFormat: String?
}

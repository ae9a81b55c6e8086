import Shared

/// Every setting of spool-api, declared once (see `Setting`): the command
/// line, `--help` and the README's table come from here; `APIConfig` reads them.
enum APISettings {
    static let addr = Setting(
        "addr", env: "SPOOL_API_ADDR", default: "`127.0.0.1:8080`", "Listen address host:port")
    static let threads = Setting(
        "threads", env: "SPOOL_API_THREADS", default: "cores", range: 1...64,
        "Event loops, each with its own socket (SO_REUSEPORT) and Redis connection")
    static let redisTimeoutMs = Setting(
        "redis-timeout-ms", env: "SPOOL_REDIS_TIMEOUT_MS", default: "2000", range: 10...60_000, unit: "milliseconds",
        "A Redis command slower than this fails the request with 503")
    static let maxBodyBytes = Setting(
        "max-body-bytes", env: "SPOOL_MAX_BODY_BYTES", default: "1048576", range: 1024...(64 << 20), unit: "bytes",
        "Largest request body")
    static let readTimeoutMs = Setting(
        "read-timeout-ms", env: "SPOOL_HTTP_READ_TIMEOUT_MS", default: "10000", range: 100...600_000, unit: "milliseconds",
        "Time to receive a whole request; also keep-alive idle time")
    static let writeTimeoutMs = Setting(
        "write-timeout-ms", env: "SPOOL_HTTP_WRITE_TIMEOUT_MS", default: "10000", range: 100...600_000, unit: "milliseconds",
        "Time for a response to drain")
    static let maxConnections = Setting(
        "max-connections", env: "SPOOL_MAX_CONNECTIONS", default: "10000", range: 1...1_000_000,
        "Open client connections at most; more are closed at once (counted and logged)")
    static let maxPending = Setting(
        "max-pending", env: "SPOOL_MAX_PENDING", default: "0 (none)", range: 0...Int64(Int32.max),
        "Pending jobs per queue above which enqueue answers 429")
    static let queueMaxPending = Setting(
        "queue-max-pending", env: "SPOOL_QUEUE_MAX_PENDING", default: "–",
        "Per-queue limits overriding `--max-pending`, `emails=10000,reports=50`")
    static let resultTTL = Setting(
        "result-ttl-s", env: "SPOOL_RESULT_TTL_S", default: "86400", range: EnqueueRequest.resultTTLSeconds, unit: "seconds",
        "Default `result_ttl_s` of a job")
    static let maxQueues = Setting(
        "max-queues", env: "SPOOL_MAX_QUEUES", default: "1000", range: 1...1_000_000,
        "Known queues at most; an enqueue to a new queue past it answers 409")
    static let metricsMaxQueues = Setting(
        "metrics-max-queues", env: "SPOOL_METRICS_MAX_QUEUES", default: "200", range: 0...100_000,
        "Queues with per-queue series in `/metrics`, the deepest first")
    static let streamKeepalive = Setting(
        "stream-keepalive-s", env: "SPOOL_STREAM_KEEPALIVE_S", default: "15", range: 1...300, unit: "seconds",
        "An event stream with nothing to send gets a comment this often, so proxies keep it open")
    static let streamMaxBuffered = Setting(
        "stream-max-buffered-bytes", env: "SPOOL_STREAM_MAX_BUFFERED_BYTES", default: "1048576", range: 4096...(64 << 20),
        unit: "bytes", "Unsent bytes an event stream may hold; a client reading slower is cut off (`cutoff` event: where to resume)")
    static let minReplicas = Setting(
        "min-replicas", env: "SPOOL_MIN_REPLICAS", default: "0 (off)", range: 0...16,
        "Replicas that must hold an enqueue, cancel or retry before it is answered (Redis WAIT); fewer in time: 503")
    static let replicaAckTimeoutMs = Setting(
        "replica-ack-timeout-ms", env: "SPOOL_REPLICA_ACK_TIMEOUT_MS", default: "1000", range: 1...60_000,
        unit: "milliseconds", "How long a write waits for those replicas; below `--redis-timeout-ms`")
    static let authFile = Setting(
        "auth-file", env: "SPOOL_AUTH_FILE", default: "–",
        "JSON file of API clients (id, token SHA-256, scopes, queues); re-read on change and SIGHUP. See Security")
    static let authMode = Setting(
        "auth", env: "SPOOL_AUTH", default: "`auto`",
        "`auto`: tokens when `--auth-file` is set, else open on loopback only; `tokens`: require the file; "
        + "`none`: no authentication, on any address")
    static let tlsCert = Setting(
        "tls-cert", env: "SPOOL_TLS_CERT", default: "–",
        "PEM certificate chain: serve HTTPS (TLS 1.2 and 1.3) instead of HTTP; with `--tls-key`. Re-read on change and SIGHUP")
    static let tlsKey = Setting(
        "tls-key", env: "SPOOL_TLS_KEY", default: "–", "PEM private key of `--tls-cert`")
    static let accessLog = Setting(
        "access-log", env: "SPOOL_ACCESS_LOG", default: "false",
        "One JSON line per answered request (method, path, route, status, duration)")
    static let drainMs = Setting(
        "drain-ms", env: "SPOOL_API_DRAIN_MS", default: "2000", range: 0...600_000, unit: "milliseconds",
        "After SIGTERM, time `/readyz` answers 503 while requests are still served")
    static let shutdownGraceMs = Setting(
        "shutdown-grace-ms", env: "SPOOL_API_SHUTDOWN_GRACE_MS", default: "10000", range: 0...3_600_000, unit: "milliseconds",
        "After SIGTERM, time until exit at the latest (includes the drain)")

    /// The API's own settings, in the order of `--help` and the README.
    static let own = [addr, threads, redisTimeoutMs, maxBodyBytes, readTimeoutMs, writeTimeoutMs, maxConnections,
                      maxPending, queueMaxPending, resultTTL, maxQueues, metricsMaxQueues, streamKeepalive, streamMaxBuffered, minReplicas,
                      replicaAckTimeoutMs, authFile, authMode, tlsCert, tlsKey, accessLog, drainMs,
                      shutdownGraceMs]
    static let all = SharedSettings.all + own
}

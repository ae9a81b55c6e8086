import CoreMetrics
import Prometheus

/// Prometheus metrics through swift-metrics: one registry per process, the
/// histogram buckets Spool's timings need, and the text exposition for
/// `GET /metrics`.
public enum MetricsSetup {
    public static let registry = PrometheusCollectorRegistry()

    /// Buckets of job run time: a millisecond to an hour.
    static let jobDurationBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(25), .milliseconds(100), .milliseconds(500),
        .seconds(1), .seconds(5), .seconds(30), .seconds(120), .seconds(600), .seconds(3600),
    ]
    /// Buckets of enqueue-to-start latency and request times: 100 µs to 10 s.
    static let latencyBuckets: [Duration] = [
        .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2),
        .milliseconds(5), .milliseconds(10), .milliseconds(50), .milliseconds(250), .seconds(1), .seconds(10),
    ]

    public static func bootstrap() {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            SpoolMetric.jobDuration: jobDurationBuckets,
            SpoolMetric.jobStartLatency: latencyBuckets,
            SpoolMetric.httpRequestDuration: latencyBuckets,
        ]
        MetricsSystem.bootstrap(factory)
        // Counters that exist (at 0) before their first event, so that a
        // rate() or an alert on them works from the start.
        Counter(label: SpoolMetric.redisReconnects).increment(by: 0)
        for kind in RedisProblem.kinds { Counter(label: SpoolMetric.redisErrors, dimensions: [("kind", kind)]).increment(by: 0) }
    }

    /// Every metric in the Prometheus text format, each family with its HELP
    /// line (swift-prometheus writes HELP only for metrics made through its own
    /// API with a text; Spool records through swift-metrics, which has none).
    /// `extra` is text already in the format (with its own HELP and TYPE).
    public static func exposition(extra: String = "") -> String {
        var out = ""
        let text = registry.emitToString()
        out.reserveCapacity(text.utf8.count + extra.utf8.count + 4096)
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("# TYPE "), let name = line.dropFirst(7).split(separator: " ").first {
                out += "# HELP \(name) \(SpoolMetric.help[String(name)] ?? "Spool metric \(name).")\n"
            }
            if line.hasPrefix("# HELP ") { continue }
            out += line
            out += "\n"
        }
        while out.hasSuffix("\n\n") { out.removeLast() }
        return out + extra
    }
}

/// Metric names, in one place. Base units (seconds), `_total` on counters.
public enum SpoolMetric {
    // API
    public static let jobsEnqueued = "spool_jobs_enqueued_total"
    public static let httpRequests = "spool_http_requests_total"
    public static let queuePending = "spool_queue_pending_jobs"
    public static let queueScheduled = "spool_queue_scheduled_jobs"
    public static let queueRunning = "spool_queue_running_jobs"
    public static let queueDead = "spool_queue_dead_jobs"
    // Worker
    public static let jobsProcessed = "spool_jobs_processed_total"
    public static let jobsFailed = "spool_jobs_failed_total"
    public static let jobsRetried = "spool_jobs_retried_total"
    public static let jobsDead = "spool_jobs_dead_total"
    public static let jobsRecovered = "spool_jobs_recovered_total"
    public static let jobDuration = "spool_job_duration_seconds"
    public static let jobStartLatency = "spool_job_start_latency_seconds"
    public static let workerLoops = "spool_worker_loops"
    public static let jobOutcomes = "spool_job_outcomes_total"
    // API
    public static let httpRequestDuration = "spool_http_request_duration_seconds"
    public static let queuesOmitted = "spool_metrics_queues_omitted"
    public static let connectionsRefused = "spool_http_connections_refused_total"
    public static let authDenied = "spool_api_auth_denied_total"
    public static let authClients = "spool_api_auth_clients"
    public static let authReloadErrors = "spool_api_auth_file_errors_total"
    public static let eventStreams = "spool_api_event_streams"
    public static let eventStreamsCut = "spool_api_event_streams_cut_total"
    // Both
    public static let redisErrors = "spool_redis_errors_total"
    public static let redisReconnects = "spool_redis_reconnects_total"
    public static let writesNotReplicated = "spool_writes_not_replicated_total"
    public static let redisUp = "spool_redis_up"
    public static let jobsMissing = "spool_queue_missing_jobs_total"

    /// The HELP text of every family, for `promtool check metrics` and people.
    public static let help: [String: String] = [
        jobsEnqueued: "Jobs stored by enqueue requests answered by this API process.",
        httpRequests: "HTTP requests answered, by route pattern, method and status.",
        httpRequestDuration: "Time from a request's arrival to its answer, by route pattern and method.",
        queuePending: "Jobs ready to run, by queue and priority, read from Redis at scrape time.",
        queueScheduled: "Delayed jobs and retries waiting for their time, by queue.",
        queueRunning: "Jobs under a lease (running), by queue.",
        queueDead: "Jobs out of attempts, kept in the dead set, by queue.",
        queuesOmitted: "Queues left out of the per-queue series because of SPOOL_METRICS_MAX_QUEUES (the deepest are shown).",
        connectionsRefused: "Client connections closed at once because SPOOL_MAX_CONNECTIONS was reached.",
        authDenied: "Requests refused by authentication (401 unauthorized) or authorization (403 forbidden, 429 client_quota), by reason.",
        authClients: "Clients in the auth file now in use (0 when authentication is off).",
        authReloadErrors: "Times the auth file changed but could not be used (unreadable or invalid); the previous clients stay in force.",
        eventStreams: "Event streams (GET .../events) open on this API process.",
        eventStreamsCut: "Event streams cut off because their client read too slowly (SPOOL_STREAM_MAX_BUFFERED_BYTES unsent).",
        jobsProcessed: "Jobs this worker ran to success, by queue.",
        jobsFailed: "Failed runs of jobs on this worker (retried or dead), by queue.",
        jobsRetried: "Failed runs scheduled for another attempt, by queue.",
        jobsDead: "Jobs moved to the dead set by this worker (out of attempts), by queue.",
        jobsRecovered: "Jobs whose lease expired (their worker died or froze) put back or buried by this worker's recovery, by queue.",
        jobOutcomes: "Outcomes of the jobs this worker ran, by job type (a configured handler, or other) and outcome.",
        jobDuration: "Run time of jobs on this worker, by queue.",
        jobStartLatency: "Time from a job being due to a worker starting it, by queue.",
        workerLoops: "Fetch loops of this worker, busy (running a job) or idle.",
        redisErrors: "Redis failures seen by this process, by kind (timeout, connection, auth, readonly, oom, misconf, noreplicas, loading, busy, masterdown, other).",
        redisReconnects: "Times this process lost its Redis connection.",
        writesNotReplicated: "Client writes (enqueue, cancel, retry) answered 503 not_replicated: stored on the primary, but fewer than SPOOL_MIN_REPLICAS replicas acknowledged them in time.",
        redisUp: "1 when this process can use Redis (connected, authenticated, primary), else 0.",
        jobsMissing: "Ids found in a queue without their job hash (evicted under a maxmemory policy, or deleted by hand), dropped; read from Redis at scrape time.",
    ]
}

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
        ]
        MetricsSystem.bootstrap(factory)
    }

    /// Every metric in the Prometheus text format.
    public static func exposition() -> String { registry.emitToString() }
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
    // Both
    public static let redisErrors = "spool_redis_errors_total"
    public static let redisReconnects = "spool_redis_reconnects_total"
}

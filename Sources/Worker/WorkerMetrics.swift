import CoreMetrics
import Shared

/// The worker's metrics, recorded through swift-metrics (exported by the
/// Prometheus registry on the health port's `/metrics`).
enum WorkerMetrics {
    static func started(_ job: Job) {
        // Both times come from Redis' clock, so hosts' clocks do not matter.
        guard let started = job.startedUs, let queued = job.runAtUs ?? job.createdUs else { return }
        Timer(label: SpoolMetric.jobStartLatency, dimensions: [("queue", job.id.queue)])
            .recordMicroseconds(max(0, started - queued))
    }

    static func finished(_ job: Job, durationMs: Int64) {
        Timer(label: SpoolMetric.jobDuration, dimensions: [("queue", job.id.queue)]).recordMilliseconds(durationMs)
    }

    static func succeeded(_ queue: String) { Counter(label: SpoolMetric.jobsProcessed, dimensions: [("queue", queue)]).increment() }

    static func failed(_ queue: String, outcome: FailCall.Outcome) {
        guard outcome != .stale else { return }
        Counter(label: SpoolMetric.jobsFailed, dimensions: [("queue", queue)]).increment()
        switch outcome {
        case .retry: Counter(label: SpoolMetric.jobsRetried, dimensions: [("queue", queue)]).increment()
        case .dead: Counter(label: SpoolMetric.jobsDead, dimensions: [("queue", queue)]).increment()
        case .stale: break
        }
    }

    static func recovered(_ queue: String, dead: Bool) {
        Counter(label: SpoolMetric.jobsRecovered, dimensions: [("queue", queue)]).increment()
        if dead { Counter(label: SpoolMetric.jobsDead, dimensions: [("queue", queue)]).increment() }
    }

    static func redisError() { Counter(label: SpoolMetric.redisErrors).increment() }
    static func redisReconnected() { Counter(label: SpoolMetric.redisReconnects).increment() }

    /// Busy and idle fetch loops, set before each scrape.
    static func loops(busy: Int, total: Int) {
        Gauge(label: SpoolMetric.workerLoops, dimensions: [("state", "busy")]).record(busy)
        Gauge(label: SpoolMetric.workerLoops, dimensions: [("state", "idle")]).record(max(0, total - busy))
    }
}

import CoreMetrics
import Shared

/// The API's metrics, recorded through swift-metrics (exported by the
/// Prometheus registry on `GET /metrics`).
enum APIMetrics {
    static func enqueued(_ queue: String, count: Int) {
        Counter(label: SpoolMetric.jobsEnqueued, dimensions: [("queue", queue)]).increment(by: count)
    }

    /// `route` is the route's pattern (`/v1/jobs/:id`), never the raw path,
    /// so the number of series stays bounded whatever clients send.
    static func request(route: String, method: String, status: Int) {
        Counter(label: SpoolMetric.httpRequests,
                dimensions: [("route", route), ("method", method), ("status", String(status))]).increment()
    }

    static func redisError() { Counter(label: SpoolMetric.redisErrors).increment() }
    static func redisReconnected() { Counter(label: SpoolMetric.redisReconnects).increment() }

    /// Queue depths as read from Redis at scrape time.
    static func queue(_ s: QueueStatsCall.Stats) {
        for p in Priority.allCases {
            Gauge(label: SpoolMetric.queuePending, dimensions: [("queue", s.name), ("priority", p.rawValue)]).record(s.pending[p] ?? 0)
        }
        Gauge(label: SpoolMetric.queueScheduled, dimensions: [("queue", s.name)]).record(s.scheduled)
        Gauge(label: SpoolMetric.queueRunning, dimensions: [("queue", s.name)]).record(s.running)
        Gauge(label: SpoolMetric.queueDead, dimensions: [("queue", s.name)]).record(s.dead)
    }
}

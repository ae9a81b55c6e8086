import CoreMetrics
import Shared

/// The API's metrics, recorded through swift-metrics (exported by the
/// Prometheus registry on `GET /metrics`).
///
/// Counters are made once per label set and kept (HandleCache).
enum APIMetrics {
    private struct RequestLabels: Hashable {
        let route: String
        let method: String
        let status: Int
    }

    private static let enqueuedCounters = HandleCache<String, Counter> {
        Counter(label: SpoolMetric.jobsEnqueued, dimensions: [("queue", $0)])
    }
    private static let requestCounters = HandleCache<RequestLabels, Counter> {
        Counter(label: SpoolMetric.httpRequests,
                dimensions: [("route", $0.route), ("method", $0.method), ("status", String($0.status))])
    }

    static func enqueued(_ queue: String, count: Int) { enqueuedCounters[queue].increment(by: count) }

    /// `route` is the route's pattern (`/v1/jobs/:id`), never the raw path,
    /// so the number of series stays bounded whatever clients send.
    static func request(route: String, method: String, status: Int) {
        requestCounters[RequestLabels(route: route, method: method, status: status)].increment()
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

import CoreMetrics
import Shared

/// The API's metrics, recorded through swift-metrics (exported by the
/// Prometheus registry on `GET /metrics`).
///
/// Counters are made once per label set and kept: asking the factory on every
/// request (a registry lookup by name and labels under its lock) showed in
/// profiles.
enum APIMetrics {
    private struct RequestLabels: Hashable {
        let route: String
        let method: String
        let status: Int
    }

    private static let lock = Lock()
    nonisolated(unsafe) private static var enqueuedCounters: [String: Counter] = [:]
    nonisolated(unsafe) private static var requestCounters: [RequestLabels: Counter] = [:]

    static func enqueued(_ queue: String, count: Int) {
        let counter = lock.locked {
            if let c = enqueuedCounters[queue] { return c }
            let c = Counter(label: SpoolMetric.jobsEnqueued, dimensions: [("queue", queue)])
            enqueuedCounters[queue] = c
            return c
        }
        counter.increment(by: count)
    }

    /// `route` is the route's pattern (`/v1/jobs/:id`), never the raw path,
    /// so the number of series stays bounded whatever clients send.
    static func request(route: String, method: String, status: Int) {
        let labels = RequestLabels(route: route, method: method, status: status)
        let counter = lock.locked {
            if let c = requestCounters[labels] { return c }
            let c = Counter(label: SpoolMetric.httpRequests,
                            dimensions: [("route", route), ("method", method), ("status", String(status))])
            requestCounters[labels] = c
            return c
        }
        counter.increment()
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

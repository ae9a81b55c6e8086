import CoreMetrics
import Shared
import Synchronization

/// The API's metrics, recorded through swift-metrics (exported by the
/// Prometheus registry on `GET /metrics`).
///
/// Counters are made once per label set and kept (HandleCache); each event
/// loop also keeps the request handles it uses (`LoopRequestMetrics`), so two
/// loops do not take a shared lock for every request.
enum APIMetrics {
    fileprivate struct RequestLabels: Hashable {
        let route: String
        let method: String
        let status: Int
    }

    private static let enqueuedCounters = HandleCache<String, Counter> {
        Counter(label: SpoolMetric.jobsEnqueued, dimensions: [("queue", $0)])
    }
    fileprivate static let requestCounters = HandleCache<RequestLabels, Counter> {
        Counter(label: SpoolMetric.httpRequests,
                dimensions: [("route", $0.route), ("method", $0.method), ("status", String($0.status))])
    }
    fileprivate struct RouteLabels: Hashable {
        let route: String
        let method: String
    }
    fileprivate static let requestTimers = HandleCache<RouteLabels, Timer> {
        Timer(label: SpoolMetric.httpRequestDuration, dimensions: [("route", $0.route), ("method", $0.method)])
    }

    static func enqueued(_ queue: String, count: Int) { enqueuedCounters[queue].increment(by: count) }


    /// A request refused by authentication or a client's quota (AuthDenial.reasons).
    static func authDenied(_ reason: String) {
        Counter(label: SpoolMetric.authDenied, dimensions: [("reason", reason)]).increment()
    }
    static func redisReconnected() { Counter(label: SpoolMetric.redisReconnects).increment() }
    static func notReplicated() { Counter(label: SpoolMetric.writesNotReplicated).increment() }
    static func redisUp(_ up: Bool) { Gauge(label: SpoolMetric.redisUp).record(up ? 1 : 0) }

    /// Open event streams of the whole process (all loops): counted and
    /// recorded under one lock, so that two loops never record out of order.
    private static let openStreams = Mutex<Int>(0)
    static func streamOpened() { streamsChanged(by: 1) }
    static func streamClosed() { streamsChanged(by: -1) }
    private static func streamsChanged(by delta: Int) {
        openStreams.withLock { n in
            n += delta
            Gauge(label: SpoolMetric.eventStreams).record(n)
        }
    }
    static func streamCut() { Counter(label: SpoolMetric.eventStreamsCut).increment() }
    /// The routes' series exist before their first request (at 0 requests).
    static func bootstrap() {
        _ = Counter(label: SpoolMetric.connectionsRefused)  // incremented by ServerErrorLog.connectionRefused
        Counter(label: SpoolMetric.writesNotReplicated).increment(by: 0)
        Counter(label: SpoolMetric.eventStreamsCut).increment(by: 0)
        Gauge(label: SpoolMetric.eventStreams).record(0)
        for route in Router.routes {
            _ = requestTimers[RouteLabels(route: route.path, method: route.method)]  // registers the empty histogram
        }
    }

    /// Queue depths as read from Redis at scrape time, in the text format:
    /// written here rather than kept as gauges, so a queue that is gone or no
    /// longer among the deepest leaves no stale series behind, and the
    /// registry does not grow with the number of queues.
    static func queueSeries(_ stats: [QueueStatsCall.Stats], omitted: Int) -> String {
        var out = ""
        func family(_ name: String, _ type: String = "gauge") {
            out += "# HELP \(name) \(SpoolMetric.help[name] ?? name)\n# TYPE \(name) \(type)\n"
        }
        family(SpoolMetric.queuePending)
        for s in stats {
            for p in Priority.allCases {
                out += "\(SpoolMetric.queuePending){queue=\"\(s.name)\",priority=\"\(p.rawValue)\"} \(s.pending[p] ?? 0)\n"
            }
        }
        for (name, value) in [(SpoolMetric.queueScheduled, \QueueStatsCall.Stats.scheduled),
                              (SpoolMetric.queueRunning, \.running), (SpoolMetric.queueDead, \.dead)] {
            family(name)
            for s in stats { out += "\(name){queue=\"\(s.name)\"} \(s[keyPath: value])\n" }
        }
        family(SpoolMetric.jobsMissing, "counter")
        for s in stats { out += "\(SpoolMetric.jobsMissing){queue=\"\(s.name)\"} \(s.missing)\n" }
        family(SpoolMetric.queuesOmitted)
        out += "\(SpoolMetric.queuesOmitted) \(omitted)\n"
        return out
    }
}

/// One event loop's request counters and timers, looked up without a lock
/// (used from the loop's thread only; misses go to APIMetrics' shared caches).
final class LoopRequestMetrics {
    private var counters: [APIMetrics.RequestLabels: Counter] = [:]
    private var timers: [APIMetrics.RouteLabels: Timer] = [:]

    /// `route` is the route's pattern (`/v1/jobs/:id`), never the raw path,
    /// so the number of series stays bounded whatever clients send.
    func request(route: String, method: String, status: Int, micros: Int64) {
        let c = APIMetrics.RequestLabels(route: route, method: method, status: status)
        if let counter = counters[c] { counter.increment() } else {
            let counter = APIMetrics.requestCounters[c]
            counters[c] = counter
            counter.increment()
        }
        let t = APIMetrics.RouteLabels(route: route, method: method)
        if let timer = timers[t] { timer.recordMicroseconds(micros) } else {
            let timer = APIMetrics.requestTimers[t]
            timers[t] = timer
            timer.recordMicroseconds(micros)
        }
    }
}

import Shared
import Synchronization

extension Router {
    /// `GET /healthz`: the process runs. Never touches Redis, so a Redis blip
    /// does not get every replica restarted by a liveness probe.
    func health(_ responder: Responder) {
        responder.send(HTTPResponse(status: 200, body: #"{"status":"ok"}"#))
    }

    /// `GET /metrics`: Prometheus text format. Queue depths are read from
    /// Redis now, so any replica reports the same numbers; only the deepest
    /// `SPOOL_METRICS_MAX_QUEUES` queues get series (and a gauge says how many
    /// were left out). With Redis down the process's own series still answer,
    /// with `spool_redis_up 0`.
    func metrics(_ responder: Responder) {
        let send: (String) -> Void = { [self] extra in
            APIMetrics.redisUp(redis.isUp)
            responder.send(HTTPResponse(status: 200, body: MetricsSetup.exposition(extra: extra),
                                        contentType: "text/plain; version=0.0.4; charset=utf-8"))
        }
        guard redis.isUp else { return send("") }
        queueNames(sorted: false) { [self] names in
            guard case .success(let names) = names else { return send("") }
            gatherStats(names) { [self] stats in
                guard case .success(let all) = stats else { return send("") }
                let shown = Router.deepest(all, count: config.metricsMaxQueues)
                send(APIMetrics.queueSeries(shown, omitted: all.count - shown.count))
            }
        }
    }

    /// The `count` deepest queues (most pending, then most running), by name.
    /// One pass keeping the top ones: sorting thousands of queues on every
    /// scrape would hold the event loop.
    static func deepest(_ all: [QueueStatsCall.Stats], count: Int) -> [QueueStatsCall.Stats] {
        guard all.count > count else { return all.sorted { $0.name < $1.name } }
        var top: [(key: (Int64, Int64), stats: QueueStatsCall.Stats)] = []
        top.reserveCapacity(count + 1)
        for s in all {
            let key = (s.pendingTotal, s.running)
            if top.count == count, let last = top.last, !(key > last.key) { continue }
            // Insert after every entry at least as deep (the first seen wins ties).
            var lo = 0, hi = top.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if top[mid].key >= key { lo = mid + 1 } else { hi = mid }
            }
            top.insert((key, s), at: lo)
            if top.count > count { top.removeLast() }
        }
        return top.map(\.stats).sorted { $0.name < $1.name }
    }

    /// `GET /readyz`: 200 when Redis takes writes now, else 503 naming the
    /// cause as Redis said it (a wrong password, a replica, out of memory, a
    /// failed disk write, too few replicas, or no answer). A write rather than
    /// a PING: a demoted or full Redis still answers PING.
    func ready(_ responder: Responder) {
        if Router.draining.load(ordering: .acquiring) {
            return responder.send(.error(503, "shutting_down", "this API process is shutting down", headers: [("Retry-After", "1")]))
        }
        guard redis.isUp else {
            let why = redis.lastProblem.map(Router.cause) ?? "not connected"
            return responder.send(.error(503, "redis_unavailable", "Redis cannot serve now: \(why)", headers: [("Retry-After", "1")]))
        }
        redis.send(["SET", schema.readinessProbe, "1", "PX", "10000"]) { [self] result in
            switch result {
            case .success:
                responder.send(HTTPResponse(status: 200, body: #"{"status":"ready","redis":"ok"}"#))
            case .failure(let e):
                problems.report(e, context: "redis cannot serve requests")
                responder.send(.error(503, "redis_unavailable", "Redis cannot serve now: \(Router.cause(e))", headers: [("Retry-After", "1")]))
            }
        }
    }
}

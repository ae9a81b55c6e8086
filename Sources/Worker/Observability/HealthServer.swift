import Shared

/// The worker's optional HTTP port (`--health-port`), on its own thread and
/// event loop, for probes and people:
/// - `GET /healthz`: 200 while the process runs (never touches Redis, so a
///   Redis blip does not get the fleet restarted by liveness probes);
/// - `GET /readyz`: 200 while connected to Redis and fetching, else 503.
/// - `GET /metrics`: Prometheus text format.
/// The first two answer with the worker's id, uptime, counters, running jobs and queues.
final class HealthServer: HTTPHandler {
    private let worker: WorkerContext
    private let loop: LibeventLoop
    private var listener: HTTPListener!
    private var thread: BackgroundThread?

    init(worker: WorkerContext, port: Int) throws {
        loop = try LibeventLoop()
        self.worker = worker
        var limits = HTTPLimits()
        limits.maxBodyBytes = 1024
        limits.maxConnectionsPerLoop = 64
        listener = try HTTPListener(loop: loop, address: ListenAddress(host: "0.0.0.0", port: port), limits: limits,
                                    handler: self, setting: worker.config.healthPortOrigin)
    }

    func start() {
        let loop = self.loop
        thread = BackgroundThread(name: "spool-health") { loop.run() }
    }

    func handle(_ request: HTTPRequest, _ responder: Responder) {
        guard request.method == "GET" || request.method == "HEAD" else {
            return responder.send(.error(405, "method_not_allowed", "\(request.method) is not allowed here; use GET",
                                         headers: [("Allow", "GET")]))
        }
        switch request.path {
        case "/healthz":
            responder.send(status(code: 200, state: "ok"))
        case "/metrics":
            WorkerMetrics.loops(busy: worker.running.count, total: worker.config.concurrency)
            WorkerMetrics.redisUp(!worker.redisHealth.isDown)
            responder.send(HTTPResponse(status: 200, body: MetricsSetup.exposition(),
                                        contentType: "text/plain; version=0.0.4; charset=utf-8"))
        case "/readyz":
            let ready = !worker.redisHealth.isDown && !worker.stopFetching.isSet
            responder.send(status(code: ready ? 200 : 503,
                                  state: ready ? "ready" : (worker.stopFetching.isSet ? "stopping" : "redis_unavailable")))
        default:
            responder.send(.error(404, "not_found", "no route for GET \(request.path.prefix(200))"))
        }
    }

    private func status(code: Int, state: String) -> HTTPResponse {
        .json(code) { w in
            w.beginObject()
            w.field("status", state)
            w.field("worker_id", worker.id)
            w.field("uptime_s", (Clock.nowMillis() - worker.startedAt) / 1000)
            w.field("processed", worker.counters.processed)
            w.field("failed", worker.counters.failed)
            w.field("running", worker.running.count)
            w.key("queues")
            w.beginArray()
            for q in worker.config.queues { w.raw(JSONWriter.quoted(q)) }
            w.endArray()
            w.endObject()
        }
    }
}

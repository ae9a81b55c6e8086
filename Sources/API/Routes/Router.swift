import Logging
import Shared

/// Maps a request to its handler by method and path. Every path answers:
/// unknown paths with 404, known paths with a wrong method with 405.
final class Router: HTTPHandler {
    let redis: AsyncRedisConnection
    let config: APIConfig
    let schema: KeySchema
    let logger: Logger
    let waiters: JobWaiters
    let coalescer: EnqueueCoalescer
    /// Queues this loop has registered in the queue set since it (re)connected.
    var registeredQueues: Set<String> = []
    /// This loop's job id generator.
    var random = FastRandom()

    init(redis: AsyncRedisConnection, waiters: JobWaiters, coalescer: EnqueueCoalescer, config: APIConfig, logger: Logger) {
        self.redis = redis
        self.waiters = waiters
        self.coalescer = coalescer
        self.config = config
        self.schema = KeySchema(prefix: config.prefix)
        self.logger = logger
        waiters.answer = { [unowned self] id, responders in answerWaiters(id, responders) }
    }

    /// One route: a method and a path pattern whose `:name` parts match any
    /// segment; the action gets the matched segments in order.
    struct Route {
        let method: String
        /// The path pattern as written, the `route` label of request metrics.
        let path: String
        /// Each segment of the pattern: nil for a `:name` part, else its bytes.
        let pattern: [[UInt8]?]
        let action: (Router, [Substring], HTTPRequest, Responder) -> Void

        init(_ method: String, _ path: String, _ action: @escaping (Router, [Substring], HTTPRequest, Responder) -> Void) {
            self.method = method
            self.path = "/" + path
            self.pattern = path.split(separator: "/").map { $0.first == ":" ? nil : Array($0.utf8) }
            self.action = action
        }

        /// The segments matched by `:` parts, or nil when the path does not
        /// match. Compares bytes: String comparison showed in profiles.
        func match(_ segments: [Substring]) -> [Substring]? {
            guard segments.count == pattern.count else { return nil }
            var captured: [Substring] = []
            for (p, s) in zip(pattern, segments) {
                if let literal = p {
                    guard s.utf8.elementsEqual(literal) else { return nil }
                } else {
                    captured.append(s)
                }
            }
            return captured
        }
    }

    static let routes: [Route] = [
        Route("GET", "healthz") { r, _, _, out in r.health(out) },
        Route("GET", "readyz") { r, _, _, out in r.ready(out) },
        Route("GET", "metrics") { r, _, _, out in r.metrics(out) },
        Route("GET", "v1/queues") { r, _, _, out in r.listQueues(out) },
        Route("GET", "v1/queues/:queue") { r, p, _, out in r.queueDetail(p[0], out) },
        Route("POST", "v1/queues/:queue/jobs") { r, p, req, out in r.enqueue(queue: p[0], req, out, batch: false) },
        Route("POST", "v1/queues/:queue/jobs/batch") { r, p, req, out in r.enqueue(queue: p[0], req, out, batch: true) },
        Route("POST", "v1/queues/:queue/pause") { r, p, _, out in r.setPaused(p[0], paused: true, out) },
        Route("POST", "v1/queues/:queue/resume") { r, p, _, out in r.setPaused(p[0], paused: false, out) },
        Route("GET", "v1/queues/:queue/dead") { r, p, req, out in r.listDead(p[0], req, out) },
        Route("DELETE", "v1/queues/:queue/dead") { r, p, _, out in r.purgeDead(p[0], out) },
        Route("POST", "v1/queues/:queue/dead/retry") { r, p, _, out in r.retryAllDead(p[0], out) },
        Route("GET", "v1/jobs/:id") { r, p, req, out in r.readJob(id: p[0], req, out) },
        Route("GET", "v1/jobs/:id/result") { r, p, _, out in r.readResult(id: p[0], out) },
        Route("POST", "v1/jobs/:id/cancel") { r, p, _, out in r.cancel(id: p[0], out) },
        Route("POST", "v1/jobs/:id/retry") { r, p, _, out in r.retry(id: p[0], out) },
        Route("GET", "v1/workers") { r, _, _, out in r.listWorkers(out) },
    ]

    func handle(_ request: HTTPRequest, _ responder: Responder) {
        let segments = request.segments
        let method = request.method == "HEAD" ? "GET" : request.method
        var allowed: [String] = []
        for route in Router.routes {
            guard let captured = route.match(segments) else { continue }
            if route.method == method {
                let counted = responder.observing { APIMetrics.request(route: route.path, method: method, status: $0) }
                return route.action(self, captured, request, counted)
            }
            allowed.append(route.method)
        }
        let responder = responder.observing { APIMetrics.request(route: "unmatched", method: "other", status: $0) }
        if allowed.isEmpty {
            responder.send(.error(404, "not_found", "no route for \(request.method) \(request.path.prefix(200))"))
        } else {
            let allow = allowed.joined(separator: ", ")
            responder.send(.error(405, "method_not_allowed", "\(request.method) is not allowed here; use \(allow)",
                                  headers: [("Allow", allow)]))
        }
    }

    /// After a reconnect Redis may have lost data (no persistence, failover):
    /// register queues again as they are used.
    func redisStateChanged(up: Bool) {
        if up { registeredQueues.removeAll() } else { APIMetrics.redisReconnected() }
    }

    /// The answer when Redis could not be reached in time.
    static func redisUnavailable(_ error: Error) -> HTTPResponse {
        .error(503, "redis_unavailable", "Redis did not answer: \(error)", headers: [("Retry-After", "1")])
    }

    /// Error replies that mean Redis cannot serve right now (loading its data,
    /// a failover, a busy script, wrong credentials, out of memory): 503 with
    /// Retry-After, like an outage.
    static let transientServerErrors = ["LOADING", "BUSY", "READONLY", "NOAUTH", "WRONGPASS", "OOM", "MASTERDOWN",
                                        "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "MISCONF"]

    /// Answers a Redis failure or an unexpected reply; logs the unexpected ones.
    func failure(_ error: Error) -> HTTPResponse {
        if let e = error as? RedisError, case .server(let message) = e,
           Router.transientServerErrors.contains(where: { message.hasPrefix($0) }) {
            APIMetrics.redisError()
            return .error(503, "redis_unavailable", "Redis cannot serve now: \(message)", headers: [("Retry-After", "1")])
        }
        if let e = error as? RedisError, case .server(let message) = e {
            logger.error("redis rejected a command", metadata: ["error": "\(message)"])
            return .error(500, "internal_error", "Redis rejected the command: \(message)")
        }
        if error is RedisError {
            APIMetrics.redisError()
            return Router.redisUnavailable(error)
        }
        logger.error("unexpected reply", metadata: ["error": "\(error)"])
        return .error(500, "internal_error", "\(error)")
    }
}

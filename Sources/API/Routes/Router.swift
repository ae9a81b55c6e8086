import Logging
import Shared
import Synchronization

/// Maps a request to its handler by method and path. Every path answers:
/// unknown paths with 404, known paths with a wrong method with 405.
final class Router: HTTPHandler {
    let redis: AsyncRedisConnection
    let config: APIConfig
    let schema: KeySchema
    let logger: Logger
    let waiters: JobWaiters
    /// The event streams open on this loop (`/events` routes).
    let feeds: EventFeeds
    let coalescer: EnqueueCoalescer
    /// Queues this loop has registered in the queue set since it (re)connected,
    /// with when (monotonic ms): registered again after `registrationTTLMs`,
    /// so a queue deleted through another process is listed again once it
    /// gets jobs.
    var registeredQueues: [String: Int64] = [:]
    static let registrationTTLMs: Int64 = 5000
    /// Answers waiting for a registration (SADD) this loop has in flight,
    /// by queue: an enqueue is answered only once its queue is listed.
    var registrationsInFlight: [String: [() -> Void]] = [:]
    /// Bumped by every queue deletion in this process: each loop then forgets
    /// its registrations (`registrationEpoch` is the one it last saw), so no
    /// loop of this process skips registering a queue that was just deleted.
    /// (Another API process may, for up to `registrationTTLMs`.)
    static let queueDeletions = Atomic<Int>(0)
    var registrationEpoch = 0
    /// Set at SIGTERM: `/readyz` answers 503 so load balancers stop sending here.
    static let draining = Atomic<Bool>(false)
    /// This loop's job id generator.
    var random = FastRandom()
    /// Redis problems and 5xx answers, logged at most once per kind per 10 s.
    let problems: RedisProblemLog
    let serverErrors: ServerErrorLog
    let requestMetrics = LoopRequestMetrics()

    /// Runs the script calls that change what a client asked for (enqueue,
    /// cancel, retry) and, with SPOOL_MIN_REPLICAS, says (NotReplicated) when
    /// too few replicas acknowledged them in time; the caller decides, by
    /// outcome, whether the call wrote anything to lose.
    let acknowledger: ReplicaAcknowledger
    /// The auth file's clients (nil: authentication is off, every request may do everything).
    let auth: LoopAuth?

    init(redis: AsyncRedisConnection, acknowledger: ReplicaAcknowledger, waiters: JobWaiters, feeds: EventFeeds,
         coalescer: EnqueueCoalescer,
         auth: LoopAuth?, config: APIConfig, logger: Logger, problems: RedisProblemLog, serverErrors: ServerErrorLog) {
        self.redis = redis
        self.auth = auth
        self.acknowledger = acknowledger
        self.waiters = waiters
        self.feeds = feeds
        self.coalescer = coalescer
        self.config = config
        self.schema = KeySchema(prefix: config.prefix)
        self.logger = logger
        self.problems = problems
        self.serverErrors = serverErrors
        waiters.answer = { [unowned self] id, responders in answerWaiters(id, responders) }
    }

    /// What a route's action gets: the segments its `:name` parts matched, in
    /// order, the request, and who sent it.
    typealias Action = @Sendable (Router, [Substring], HTTPRequest, Responder, Caller) -> Void

    /// One route: a method and a path pattern whose `:name` parts match any
    /// segment; the action gets the matched segments in order.
    struct Route: Sendable {
        let method: String
        /// Who may call it (checked in `authorize` before the action runs).
        let access: RouteAccess
        /// The path pattern as written, the `route` label of request metrics.
        let path: String
        /// Each segment of the pattern: nil for a `:name` part, else its bytes.
        let pattern: [[UInt8]?]
        /// The query parameters the route reads; any other is refused (400),
        /// so that a typo (`?wiat=5`) is an error rather than ignored.
        let query: [String]
        let action: Action

        init(_ method: String, _ path: String, query: [String] = [], _ access: RouteAccess, _ action: @escaping Action) {
            self.method = method
            self.access = access
            self.path = "/" + path
            self.pattern = path.split(separator: "/").map { $0.first == ":" ? nil : Array($0.utf8) }
            self.query = query
            self.action = action
        }

        /// The first query parameter the route does not take, if any.
        func unknownParameter(_ request: HTTPRequest) -> String? {
            if request.query.isEmpty { return nil }  // the usual case: no work, no allocation
            return request.query.keys.sorted().first { !query.contains($0) }
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
        Route("GET", "healthz", .open) { r, _, _, out, _ in r.health(out) },
        Route("GET", "readyz", .open) { r, _, _, out, _ in r.ready(out) },
        Route("GET", "metrics", .metrics) { r, _, _, out, _ in r.metrics(out) },
        Route("GET", "v1/queues", query: ["limit", "cursor", "prefix"], .global(.read)) { r, _, req, out, who in
            r.listQueues(req, out, who)
        },
        Route("GET", "v1/queues/:queue", .queue(.read)) { r, p, _, out, _ in r.queueDetail(p[0], out) },
        Route("DELETE", "v1/queues/:queue", query: ["purge"], .queue(.admin)) { r, p, req, out, _ in r.deleteQueue(p[0], req, out) },
        Route("POST", "v1/queues/:queue/jobs", .queue(.enqueue)) { r, p, req, out, who in
            r.enqueue(queue: p[0], req, out, batch: false, who)
        },
        Route("POST", "v1/queues/:queue/jobs/batch", .queue(.enqueue)) { r, p, req, out, who in
            r.enqueue(queue: p[0], req, out, batch: true, who)
        },
        Route("POST", "v1/queues/:queue/pause", .queue(.admin)) { r, p, _, out, _ in r.setPaused(p[0], paused: true, out) },
        Route("POST", "v1/queues/:queue/resume", .queue(.admin)) { r, p, _, out, _ in r.setPaused(p[0], paused: false, out) },
        Route("GET", "v1/queues/:queue/dead", query: ["limit", "cursor"], .queue(.read)) { r, p, req, out, who in
            r.listDead(p[0], req, out, who)
        },
        Route("GET", "v1/queues/:queue/events", query: ["after"], .queue(.read)) { r, p, req, out, who in
            r.queueEvents(p[0], req, out, who)
        },
        Route("GET", "v1/queues/:queue/groups", query: ["limit", "cursor"], .queue(.read)) { r, p, req, out, _ in
            r.listGroups(p[0], req, out)
        },
        Route("DELETE", "v1/queues/:queue/dead", .queue(.admin)) { r, p, _, out, _ in r.purgeDead(p[0], out) },
        Route("POST", "v1/queues/:queue/dead/retry", .queue(.admin)) { r, p, _, out, _ in r.retryAllDead(p[0], out) },
        Route("GET", "v1/jobs/:id", query: ["wait"], .job(.read)) { r, p, req, out, who in
            r.readJob(id: p[0], req, out, view: .job, who)
        },
        Route("GET", "v1/jobs/:id/result", query: ["wait"], .job(.read)) { r, p, req, out, who in
            r.readJob(id: p[0], req, out, view: .result, who)
        },
        Route("GET", "v1/jobs/:id/events", query: ["after"], .job(.read)) { r, p, req, out, who in
            r.jobEvents(id: p[0], req, out, who)
        },
        Route("POST", "v1/jobs/:id/cancel", .job(.enqueue)) { r, p, _, out, who in r.cancel(id: p[0], out, who) },
        Route("POST", "v1/jobs/:id/retry", .job(.enqueue)) { r, p, _, out, who in r.retry(id: p[0], out, who) },
        Route("GET", "v1/limits", query: ["limit", "cursor"], .everyQueue(.read)) { r, _, req, out, _ in r.listLimits(req, out) },
        Route("GET", "v1/limits/:limit", .everyQueue(.read)) { r, p, _, out, _ in r.getLimit(p[0], out) },
        Route("PUT", "v1/limits/:limit", .everyQueue(.admin)) { r, p, req, out, _ in r.putLimit(p[0], req, out) },
        Route("DELETE", "v1/limits/:limit", .everyQueue(.admin)) { r, p, _, out, _ in r.deleteLimit(p[0], out) },
        Route("GET", "v1/workers", .everyQueue(.admin)) { r, _, _, out, _ in r.listWorkers(out) },
    ]

    func handle(_ request: HTTPRequest, _ responder: Responder) {
        let segments = request.segments
        let method = request.method == "HEAD" ? "GET" : request.method
        var allowed: [String] = []
        for route in Router.routes {
            guard let captured = route.match(segments) else { continue }
            if route.method == method {
                let counted = responder.observing(observer(route: route.path, method: method, request))
                guard let caller = authorize(route, captured, request, counted) else { return }
                if let unknown = route.unknownParameter(request) {
                    let takes = route.query.isEmpty ? "this route takes none" : "this route takes " + route.query.joined(separator: ", ")
                    return counted.send(.error(400, "invalid_field", "unknown query parameter '\(unknown.prefix(80))'; \(takes)"))
                }
                return route.action(self, captured, request, counted, caller)
            }
            allowed.append(route.method)
        }
        let responder = responder.observing(observer(route: "unmatched", method: "other", request))
        if allowed.isEmpty {
            responder.send(.error(404, "not_found", "no route for \(request.method) \(request.path.prefix(200))"))
        } else {
            let allow = allowed.joined(separator: ", ")
            responder.send(.error(405, "method_not_allowed", "\(request.method) is not allowed here; use \(allow)",
                                  headers: [("Allow", allow)]))
        }
    }

    /// What happens once a request is answered: its count and duration, a line
    /// in the access log when asked for, and a (rate-limited) line per 5xx.
    private func observer(route: String, method: String, _ request: HTTPRequest) -> (Int) -> Void {
        let started = Clock.monotonicNanos()
        // Only what the access log needs is kept, and only when it is on.
        let logged = config.accessLog ? (method: request.method, path: String(request.path.prefix(200))) : nil
        return { [self] status in
            let micros = Int64((Clock.monotonicNanos() - started) / 1000)
            requestMetrics.request(route: route, method: method, status: status, micros: micros)
            if status >= 500 { serverErrors.note(route: route, method: method, status: status) }
            if let logged {
                logger.info("request", metadata: [
                    "method": "\(logged.method)", "path": "\(logged.path)", "route": "\(route)",
                    "status": .stringConvertible(status), "duration_ms": "\(Double(micros / 10) / 100)",
                ])
            }
        }
    }

    /// After a reconnect Redis may have lost data (no persistence, failover):
    /// register queues again as they are used.
    func redisStateChanged(up: Bool) {
        if up { registeredQueues.removeAll() } else { APIMetrics.redisReconnected() }
    }

    /// Answers a Redis failure or an unexpected reply. Redis being unable to
    /// serve (down, too slow, a refused password, a replica, out of memory, a
    /// failed disk write, too few replicas) is 503 `redis_unavailable` naming
    /// the cause, counted and logged by kind; a bad command or reply is a
    /// defect of Spool: 500, logged.
    func failure(_ error: Error) -> HTTPResponse {
        if let e = error as? NotReplicated {
            APIMetrics.notReplicated()
            let jobs = e.jobIDs.isEmpty ? "" : " Jobs: \(e.jobIDs.prefix(20).joined(separator: ", "))"
                + (e.jobIDs.count > 20 ? " and \(e.jobIDs.count - 20) more." : ".")
            return .error(503, "not_replicated",
                          "the change is stored on the Redis primary, but \(e); a failover now could lose it "
                          + "(SPOOL_MIN_REPLICAS).\(jobs) Retry with the same idempotency_key, or read the job, to find it.",
                          headers: [("Retry-After", "1")])
        }
        if let e = error as? RedisError {
            if case .server(let message) = e, !RedisProblem.unavailableCodes.contains(RedisProblem.code(message)) {
                logger.error("redis rejected a command", metadata: ["error": "\(message)"])
                return .error(500, "internal_error", "Redis rejected the command: \(message)")
            }
            problems.report(e, context: "redis cannot serve requests")
            return .error(503, "redis_unavailable", "Redis cannot serve now: \(Router.cause(e))", headers: [("Retry-After", "1")])
        }
        logger.error("unexpected reply", metadata: ["error": "\(error)"])
        return .error(500, "internal_error", "\(error)")
    }


    /// The cause of a Redis failure as a person reads it.
    static func cause(_ e: RedisError) -> String {
        switch e {
        case .timeout: return "no answer within the Redis timeout"
        case .connection(let m), .server(let m): return m
        }
    }
}

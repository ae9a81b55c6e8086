import Logging
import Shared

/// Maps a request to its handler by method and path. Every path answers:
/// unknown paths with 404, known paths with a wrong method with 405.
final class Router: HTTPHandler {
    let redis: AsyncRedisConnection
    let config: APIConfig
    let schema: KeySchema
    let logger: Logger
    /// Queues this loop has registered in the queue set since it (re)connected.
    var registeredQueues: Set<String> = []

    init(redis: AsyncRedisConnection, config: APIConfig, logger: Logger) {
        self.redis = redis
        self.config = config
        self.schema = KeySchema(prefix: config.prefix)
        self.logger = logger
    }

    /// After a reconnect Redis may have lost data (no persistence, failover):
    /// register queues again as they are used.
    func redisStateChanged(up: Bool) {
        if up { registeredQueues.removeAll() }
    }

    func handle(_ request: HTTPRequest, _ responder: Responder) {
        let s = request.segments
        let m = request.method
        switch (s.count, s.first, s.dropFirst().first) {
        case (1, "healthz", _):
            only("GET", m, responder) { health(responder) }
        case (1, "readyz", _):
            only("GET", m, responder) { ready(responder) }
        case (2, "v1", "queues"):
            only("GET", m, responder) { listQueues(responder) }
        case (4, "v1", "queues") where s[3] == "jobs":
            only("POST", m, responder) { enqueue(queue: s[2], request, responder, batch: false) }
        case (5, "v1", "queues") where s[3] == "jobs" && s[4] == "batch":
            only("POST", m, responder) { enqueue(queue: s[2], request, responder, batch: true) }
        case (3, "v1", "jobs"):
            only("GET", m, responder) { readJob(id: s[2], responder) }
        case (4, "v1", "jobs") where s[3] == "result":
            only("GET", m, responder) { readResult(id: s[2], responder) }
        default:
            responder.send(.error(404, "not_found", "no route for \(m) \(request.path.prefix(200))"))
        }
    }

    private func only(_ method: String, _ actual: String, _ responder: Responder, _ run: () -> Void) {
        if actual == method || (method == "GET" && actual == "HEAD") {
            run()
        } else {
            responder.send(.error(405, "method_not_allowed", "\(actual) is not allowed here; use \(method)",
                                  headers: [("Allow", method)]))
        }
    }

    /// The answer when Redis could not be reached in time.
    static func redisUnavailable(_ error: Error) -> HTTPResponse {
        .error(503, "redis_unavailable", "Redis did not answer: \(error)", headers: [("Retry-After", "1")])
    }

    /// Answers a Redis failure or an unexpected reply; logs the unexpected ones.
    func failure(_ error: Error) -> HTTPResponse {
        if let e = error as? RedisError, case .server(let message) = e {
            logger.error("redis rejected a command", metadata: ["error": "\(message)"])
            return .error(500, "internal_error", "Redis rejected the command: \(message)")
        }
        if error is RedisError { return Router.redisUnavailable(error) }
        logger.error("unexpected reply", metadata: ["error": "\(error)"])
        return .error(500, "internal_error", "\(error)")
    }
}

import CoreMetrics
import Logging
import Shared

/// Logs the 5xx answers of the API, at most one line per route and status
/// every 10 s with the count since the last line: an outage is visible in the
/// log without flooding it. (Each is also counted in spool_http_requests_total.)
/// Connections refused at SPOOL_MAX_CONNECTIONS are counted and logged the same way.
final class ServerErrorLog: Sendable {
    private struct Key: Hashable {
        let route: String
        let method: String
        let status: Int
    }

    private let logger: Logger
    private let answers = LogThrottle<Key>()
    private let refusals = LogThrottle<Bool>()

    init(logger: Logger) { self.logger = logger }

    /// A connection closed at once at SPOOL_MAX_CONNECTIONS.
    func connectionRefused() {
        Counter(label: SpoolMetric.connectionsRefused).increment()
        guard let count = refusals.occurred(true) else { return }
        logger.warning("connection refused: SPOOL_MAX_CONNECTIONS reached", metadata: [
            "refused": .stringConvertible(count), "window_s": .stringConvertible(refusals.intervalMs / 1000),
        ])
    }

    func note(route: String, method: String, status: Int) {
        guard let count = answers.occurred(Key(route: route, method: method, status: status)) else { return }
        logger.warning("answered a server error", metadata: [
            "route": "\(route)", "method": "\(method)", "status": .stringConvertible(status),
            "count": .stringConvertible(count), "window_s": .stringConvertible(answers.intervalMs / 1000),
        ])
    }
}

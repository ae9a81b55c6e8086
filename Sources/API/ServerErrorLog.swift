import CoreMetrics
import Logging
import Shared

/// Logs the 5xx answers of the API, at most one line per route and status
/// every 10 s with the count since the last line: an outage is visible in the
/// log without flooding it. (Each is also counted in spool_http_requests_total.)
/// Connections refused at SPOOL_MAX_CONNECTIONS are counted and logged the same way.
final class ServerErrorLog: @unchecked Sendable {
    private struct Key: Hashable {
        let route: String
        let method: String
        let status: Int
    }

    private let logger: Logger
    private let lock = Lock()
    private var lastLogged: [Key: Int64] = [:]
    private var since: [Key: Int] = [:]
    static let intervalMs: Int64 = 10_000

    private var refusedSince = 0
    private var lastRefusalLog: Int64 = -1_000_000

    init(logger: Logger) { self.logger = logger }

    /// A connection closed at once at SPOOL_MAX_CONNECTIONS.
    func connectionRefused() {
        Counter(label: SpoolMetric.connectionsRefused).increment()
        let now = Clock.monotonicMillis()
        let count: Int? = lock.locked {
            refusedSince += 1
            if now - lastRefusalLog < ServerErrorLog.intervalMs { return nil }
            lastRefusalLog = now
            defer { refusedSince = 0 }
            return refusedSince
        }
        guard let count else { return }
        logger.warning("connection refused: SPOOL_MAX_CONNECTIONS reached", metadata: [
            "refused": .stringConvertible(count), "window_s": .stringConvertible(ServerErrorLog.intervalMs / 1000),
        ])
    }

    func note(route: String, method: String, status: Int) {
        let key = Key(route: route, method: method, status: status)
        let now = Clock.monotonicMillis()
        let count: Int? = lock.locked {
            since[key, default: 0] += 1
            if let last = lastLogged[key], now - last < ServerErrorLog.intervalMs { return nil }
            lastLogged[key] = now
            return since.removeValue(forKey: key)
        }
        guard let count else { return }
        logger.warning("answered a server error", metadata: [
            "route": "\(route)", "method": "\(method)", "status": .stringConvertible(status),
            "count": .stringConvertible(count), "window_s": .stringConvertible(ServerErrorLog.intervalMs / 1000),
        ])
    }
}

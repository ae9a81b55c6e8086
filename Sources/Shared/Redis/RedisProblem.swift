import CoreMetrics
import Logging

/// The Redis conditions an operator acts on, named by a short `kind` (the
/// label of `spool_redis_errors_total`) and read from an error or a reply.
///
/// Why a kind and not the message: an alert wants "writes refused because the
/// node is a replica" or "out of memory", not a free text per occurrence.
public enum RedisProblem {
    /// The first word of an error reply (`READONLY`, `OOM`, …), Redis' own code.
    public static func code(_ message: String) -> String {
        String(message.prefix { $0 != " " })
    }

    /// Error codes that mean "this node cannot serve now" (answered 503 with
    /// Retry-After, like an outage), as opposed to a bad command.
    public static let unavailableCodes: Set<String> = [
        "LOADING", "BUSY", "READONLY", "NOAUTH", "WRONGPASS", "NOPERM", "OOM", "MASTERDOWN",
        "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "MISCONF", "NOTPRIMARY",
        // Redis Cluster redirections still unresolved when the command's time ran out.
        "MOVED", "ASK",
    ]

    /// Every kind, for counters that exist at 0 before their first event.
    public static let kinds = ["timeout", "connection", "auth", "readonly", "oom", "misconf", "noreplicas",
                               "loading", "busy", "masterdown", "other"]

    /// The metric label for an error.
    public static func kind(of error: Error) -> String {
        guard let e = error as? RedisError else { return "other" }
        switch e {
        case .timeout: return "timeout"
        case .connection(let m): return kind(ofText: m) ?? "connection"
        case .server(let m): return kind(ofText: m) ?? "other"
        }
    }

    static func kind(ofText message: String) -> String? {
        for (needle, kind) in [("NOTPRIMARY", "readonly"), ("READONLY", "readonly"), ("WRONGPASS", "auth"), ("NOAUTH", "auth"),
                               ("NOPERM", "auth"), ("OOM", "oom"), ("MISCONF", "misconf"), ("NOREPLICAS", "noreplicas"),
                               ("LOADING", "loading"), ("BUSY", "busy"), ("MASTERDOWN", "masterdown")]
        where message.hasPrefix(needle) || message.contains(": " + needle) {
            return kind
        }
        return nil
    }

    /// An error reply that says this node no longer takes writes: the
    /// connection must be dropped and made again (and its role checked), never
    /// retried in place against a replica.
    public static func meansNotPrimary(_ message: String) -> Bool { message.hasPrefix("READONLY") }

    /// An error reply to ROLE that still lets Spool use the node: an ACL that
    /// denies ROLE, or a server that does not know it. Any other error (NOAUTH
    /// when no password was given, too many clients, LOADING) refuses the node.
    public static func roleMayBeDenied(_ message: String) -> Bool {
        message.hasPrefix("NOPERM") || message.hasPrefix("ERR unknown command")
    }

    /// The answer to ROLE, as a reason to refuse the node (nil for a primary).
    public static func refusal(ofRole reply: RedisReply, address: String) -> String? {
        if case .error(let message) = reply {
            return roleMayBeDenied(message) ? nil : "ROLE failed on \(address): \(message)"
        }
        guard let role = reply.array?.first?.string else { return nil }
        if role == "master" { return nil }
        return "NOTPRIMARY \(address) is a \(role == "slave" ? "replica" : role), not the primary; Spool writes only to the primary (point REDIS_URL at an address that follows the primary)"
    }

    /// The warning for a `maxmemory-policy` that lets Redis evict keys, nil
    /// for `noeviction` (or when the setting could not be read).
    public static func evictionWarning(policy: String?) -> String? {
        guard let policy, policy != "noeviction" else { return nil }
        return "Redis maxmemory-policy is \(policy): when Redis reaches maxmemory it evicts keys, and jobs can disappear silently; set maxmemory-policy noeviction for Spool's Redis"
    }
}

/// Logs Redis problems at most once per kind per interval (an outage must
/// not flood the log) and counts every one of them.
public final class RedisProblemLog: Sendable {
    private let logger: Logger
    private let throttle: LogThrottle<String>

    public init(logger: Logger, intervalMs: Int64 = 10_000) {
        self.logger = logger
        throttle = LogThrottle(intervalMs: intervalMs)
    }

    /// Counts the problem and logs it unless one of its kind was logged within the interval.
    public func report(_ error: Error, context: String) {
        let kind = RedisProblem.kind(of: error)
        Counter(label: SpoolMetric.redisErrors, dimensions: [("kind", kind)]).increment()
        guard let count = throttle.occurred(kind) else { return }
        var metadata: Logger.Metadata = ["kind": "\(kind)", "error": "\(error)"]
        // The ones since the last line, this one aside, were not logged.
        if count > 1 { metadata["suppressed"] = .stringConvertible(count - 1) }
        logger.error("\(context)", metadata: metadata)
    }
}

/// Checks made once at start against the Redis a process uses.
public enum StartupChecks {
    /// Warns when Redis may evict keys (jobs would vanish silently). Runs on a
    /// short-lived connection of its own; a Redis that is down or forbids
    /// CONFIG (managed services rename it) is skipped without a word here:
    /// the connections report outages themselves.
    public static func warnAboutEviction(_ endpoint: RedisEndpoint, logger: Logger) {
        let redis = RedisConnection(endpoint: endpoint, commandTimeoutMs: 2000)
        defer { redis.disconnect() }
        guard let reply = try? redis.command(["CONFIG", "GET", "maxmemory-policy"]),
              let parts = reply.array, parts.count == 2 else { return }
        if let warning = RedisProblem.evictionWarning(policy: parts[1].string) {
            logger.warning("\(warning)", metadata: ["maxmemory_policy": "\(parts[1].string ?? "")"])
        }
    }
}

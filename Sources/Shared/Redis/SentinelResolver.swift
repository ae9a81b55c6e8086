import Synchronization

/// Finding the primary behind a `redis+sentinel://` endpoint.
///
/// Every connect asks again (both connection kinds call `resolved` before
/// connecting), so a connection that dropped after a failover (READONLY, a
/// refused ROLE, the old primary gone) comes back on the new primary without
/// anything else to follow; the ROLE check after the handshake still refuses
/// a node that the sentinels named a moment too early.
extension RedisEndpoint {
    /// The node to connect to now: this endpoint itself, or for a Sentinel
    /// endpoint the primary that the first sentinel to answer names (each
    /// asked in turn, each bounded by `timeoutMs`). Throws naming what every
    /// sentinel said when none names one.
    public func resolved(timeoutMs: Int) throws -> RedisEndpoint {
        guard let sentinel else { return self }
        if SentinelWatch.failoverInProgress.load(ordering: .acquiring) {
            throw RedisError.connection("a Sentinel failover of '\(sentinel.masterName)' is in progress; "
                                        + "waiting for the sentinels to name the new primary")
        }
        var problems: [String] = []
        for node in sentinel.nodes {
            let at = sentinel.endpoint(of: node)
            let connection = RedisConnection(endpoint: at, commandTimeoutMs: timeoutMs, requiresPrimary: false)
            defer { connection.disconnect() }
            do {
                let reply = try connection.command(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", sentinel.masterName])
                if case .array(let parts) = reply, parts.count == 2, let host = parts[0].string,
                   let port = parts[1].int, (1...65535).contains(port) {
                    var target = self
                    target.sentinel = nil
                    target.host = host
                    target.port = Int(port)
                    return target
                }
                if case .error(let message) = reply {
                    problems.append("\(at.address): \(message)")
                } else {
                    problems.append("\(at.address): knows no master named '\(sentinel.masterName)'")
                }
            } catch {
                problems.append("\(error)")
            }
        }
        throw RedisError.connection("no sentinel named a primary for '\(sentinel.masterName)': "
                                    + problems.joined(separator: "; "))
    }
}

import Synchronization

/// Finding the primary behind a `redis+sentinel://` endpoint.
///
/// Every connect asks (both connection kinds call `resolved` before
/// connecting), so a connection that dropped after a failover (READONLY, a
/// refused ROLE, the old primary gone) comes back on the new primary; the
/// ROLE check after the handshake still refuses a node named a moment too
/// early. In the API and the worker the SentinelWatch has the answer already,
/// so a connect asks no sentinel itself (on the API's event-loop thread that
/// question would block every request of the loop).
extension RedisEndpoint {
    /// Each sentinel is asked at most this long when no watch has the answer.
    static let sentinelTimeoutMs = 500

    /// The node to connect to now: this endpoint itself, or for a Sentinel
    /// endpoint the primary the sentinels name (the watch's answer, else
    /// asked of every sentinel, the newest configuration winning). Throws
    /// while a failover is in progress, or naming what every sentinel said
    /// when none names a primary.
    /// A cluster endpoint resolves to one of its primaries, another at each
    /// call (for a connection that needs any node: pub/sub).
    public func resolved() throws -> RedisEndpoint {
        if cluster != nil { return clusterNode(ClusterTopology.anyNode(self)) }
        guard let sentinel else { return self }
        if SentinelWatch.failoverInProgress.load(ordering: .acquiring) {
            throw RedisError.connection("a Sentinel failover of '\(sentinel.masterName)' is in progress; "
                                        + "waiting for the sentinels to name the new primary")
        }
        var primary = SentinelWatch.current
        if primary == nil {
            let connections = sentinel.connections(timeoutMs: RedisEndpoint.sentinelTimeoutMs)
            defer { connections.forEach { $0.disconnect() } }
            let survey = SentinelWatch.survey(connections, master: sentinel.masterName)
            guard let named = survey.primary else {
                throw RedisError.connection("no sentinel named a primary for '\(sentinel.masterName)': "
                                            + survey.problems.joined(separator: "; "))
            }
            primary = named
        }
        var target = self
        target.sentinel = nil
        target.host = primary!.host
        target.port = primary!.port
        return target
    }
}

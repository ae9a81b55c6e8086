/// The blocking connection's way through a Redis Cluster (RedisConnection
/// uses it for a `redis+cluster://` endpoint): one connection per primary,
/// each command sent to the primary serving its key's slot.
///
/// - `MOVED`: the slot map is loaded again and the command sent where the
///   reply said;
/// - `ASK` (a slot being migrated, this key already moved): `ASKING` and the
///   command, in one write, to the node named;
/// - `TRYAGAIN`, `CLUSTERDOWN`: tried again after 10, 20, 40... ms, for up to
///   one command timeout; then the reply is returned (the caller sees an error);
/// - a node that cannot be reached: the map is loaded again (a failover may
///   have promoted a replica) and the call fails like any outage, so that
///   callers back off as they do on one Redis.
final class BlockingClusterRouter {
    private let endpoint: RedisEndpoint
    private let timeoutMs: Int
    private var nodes: [RedisEndpoint.Node: RedisConnection] = [:]

    init(endpoint: RedisEndpoint, timeoutMs: Int) {
        self.endpoint = endpoint
        self.timeoutMs = timeoutMs
    }

    func disconnect() {
        for connection in nodes.values { connection.disconnect() }
        nodes = [:]
    }

    /// Makes sure the slot map is known (the nodes connect at first use).
    func connect() throws {
        _ = try ClusterTopology.mapOrLoad(endpoint)
    }

    @inline(never)
    func command(_ command: [String], blockingMs: Int? = nil) throws -> RedisReply {
        let args = ClusterSlot.withSlotGuard(command)
        let slot = ClusterSlot.of(command: args)
        var target = try primary(for: slot)
        var asking = false
        var retries = 0
        let giveUpAt = Clock.monotonicMillis() + Int64(timeoutMs)
        var redirects = 0
        while true {
            let connection = self.connection(target)
            let reply: RedisReply
            do {
                if asking, let blockingMs {
                    _ = try connection.command(["ASKING"])
                    reply = try connection.blockingCommand(args, blockingMs: blockingMs)
                } else if asking {
                    reply = try connection.pipeline([["ASKING"], args]).last ?? .null
                } else if let blockingMs {
                    reply = try connection.blockingCommand(args, blockingMs: blockingMs)
                } else {
                    reply = try connection.command(args)
                }
            } catch {
                // The node may be gone for good: the next call uses a fresh map.
                ClusterTopology.refreshSoon(endpoint)
                throw error
            }
            asking = false
            guard let redirect = ClusterReply(reply, askedAt: target, redirects: redirects) else { return reply }
            redirects += 1
            switch redirect {
            case .moved(_, let to):
                ClusterTopology.refreshSoon(endpoint)
                target = to
            case .ask(_, let to):
                target = to
                asking = true
            case .tryAgain:
                let delay = Int64(ClusterReply.retryDelayMs(after: retries))
                guard Clock.monotonicMillis() + delay < giveUpAt else { return reply }
                Clock.sleep(milliseconds: delay)
                retries += 1
                redirects = 0
                target = try primary(for: slot)
            }
        }
    }

    /// The commands one by one (they may go to different nodes), replies in order.
    func pipeline(_ commands: [[String]]) throws -> [RedisReply] {
        try commands.map { try command($0) }
    }

    /// The primary serving `slot` (any primary for a command without a key).
    private func primary(for slot: Int?) throws -> RedisEndpoint.Node {
        var map = try ClusterTopology.mapOrLoad(endpoint)
        guard let slot else { return map.primaries[0] }
        if let node = map.primary(forSlot: slot) { return node }
        map = try ClusterTopology.load(endpoint)
        guard let node = map.primary(forSlot: slot) else {
            throw RedisError.connection("no Redis Cluster primary serves slot \(slot) (the cluster is down for it)")
        }
        return node
    }

    private func connection(_ node: RedisEndpoint.Node) -> RedisConnection {
        if let known = nodes[node] { return known }
        let made = RedisConnection(endpoint: endpoint.clusterNode(node), commandTimeoutMs: timeoutMs)
        nodes[node] = made
        return made
    }
}

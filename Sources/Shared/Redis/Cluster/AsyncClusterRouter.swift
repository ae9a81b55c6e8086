/// The API's way through a Redis Cluster, inside an AsyncRedisConnection made
/// for a `redis+cluster://` endpoint: one connection (`link`) per primary of
/// the slot map, each command sent to the primary serving its key's slot.
///
/// - `MOVED`: the command goes where the reply said, and the watch thread
///   loads the map again (ClusterTopology); the event loop never blocks;
/// - `ASK`: `ASKING` then the command to the node named (in order on its link);
/// - `TRYAGAIN`, `CLUSTERDOWN`: sent again after 10, 20, 40... ms for up to one
///   command timeout, on a timer of the loop;
/// - `WAIT` (SPOOL_MIN_REPLICAS): sent to every primary that this connection
///   sent commands to since the last `WAIT`; the smallest count is the answer,
///   so the acknowledgement covers every write wherever it went.
///
/// Up (`isUp`) while the map is known and every primary's link is up. The
/// links follow the map: a primary added or promoted gets a link within a
/// tick (100 ms) of the map naming it; a node that left the map is closed.
final class AsyncClusterRouter {
    private unowned let owner: AsyncRedisConnection
    private var links: [RedisEndpoint.Node: AsyncRedisConnection] = [:]
    private var map: ClusterMap?
    private var mapEpoch = -1
    private var timer: RepeatingTimer?
    private var wasUp = false
    /// Primaries sent commands since the last WAIT.
    private var written: Set<RedisEndpoint.Node> = []
    /// When each link to a node outside the map was made (a MOVED or ASK
    /// named a node the map does not know yet): closed once unused that long.
    private var strangers: [RedisEndpoint.Node: Int64] = [:]
    static let strangerLifeMs: Int64 = 5000
    static let tickMs = 100

    init(owner: AsyncRedisConnection) {
        self.owner = owner
    }

    func start() {
        timer = owner.loop.every(milliseconds: AsyncClusterRouter.tickMs) { [unowned self] in followMap() }
        followMap()
    }

    func close() {
        timer = nil
        for link in links.values { link.close() }
        links = [:]
    }

    var isUp: Bool {
        guard let map else { return false }
        return map.primaries.allSatisfy { links[$0]?.isUp ?? false }
    }

    var lastProblem: RedisError? {
        guard let map else { return .connection("the Redis Cluster slot map is not known yet") }
        for node in map.primaries {
            guard let link = links[node] else { return .connection("\(node.address): not connected yet") }
            if let problem = link.lastProblem { return problem }
        }
        return nil
    }

    /// Takes the newest map (the watch thread loads it) and opens or closes links to match.
    private func followMap() {
        let epoch = ClusterTopology.epoch.load(ordering: .acquiring)
        if epoch != mapEpoch, let fresh = ClusterTopology.current {
            mapEpoch = epoch
            map = fresh
            for node in fresh.primaries where links[node] == nil { _ = link(node) }
            for (node, link) in links where !fresh.primaries.contains(node) {
                link.close()
                links[node] = nil
            }
        }
        if map == nil { ClusterTopology.requestRefresh() }
        let now = Clock.monotonicMillis()
        for (node, since) in strangers where now - since > AsyncClusterRouter.strangerLifeMs {
            strangers[node] = nil
            if let map, !map.primaries.contains(node) {
                links[node]?.close()
                links[node] = nil
            }
        }
        noteState()
    }

    private func noteState() {
        let up = isUp
        guard up != wasUp else { return }
        wasUp = up
        owner.onStateChange?(up)
    }

    private func link(_ node: RedisEndpoint.Node) -> AsyncRedisConnection {
        if let known = links[node] {
            if strangers[node] != nil { strangers[node] = Clock.monotonicMillis() }
            return known
        }
        if let map, !map.primaries.contains(node) { strangers[node] = Clock.monotonicMillis() }
        let made = AsyncRedisConnection(endpoint: owner.endpoint.clusterNode(node), loop: owner.loop,
                                        commandTimeoutMs: owner.commandTimeoutMs)
        made.onStateChange = { [unowned self] _ in noteState() }
        made.onProblem = { [unowned self] problem in
            // A node unreachable or demoted: the map has probably changed.
            ClusterTopology.requestRefresh()
            owner.onProblem?(problem)
        }
        links[node] = made
        made.start()
        return made
    }

    // Not inlined: it would be copied into every caller of the connection
    // (hundreds of kilobytes of code for a path one Redis never takes).
    @inline(never)
    func send(_ command: [String], _ callback: @escaping (Result<RedisReply, RedisError>) -> Void) {
        if command.first == "WAIT" { return waitForReplicas(command, callback) }
        let args = ClusterSlot.withSlotGuard(command)
        if map == nil { followMap() }
        guard let map else {
            ClusterTopology.requestRefresh()
            return callback(.failure(.connection("the Redis Cluster slot map is not known yet")))
        }
        let slot = ClusterSlot.of(command: args)
        guard let node = slot.map({ map.primary(forSlot: $0) }) ?? map.primaries.first else {
            ClusterTopology.requestRefresh()
            return callback(.failure(.connection("no Redis Cluster primary serves slot \(slot ?? 0) (the cluster is down for it)")))
        }
        dispatch(args, to: node, giveUpAt: Clock.monotonicMillis() + owner.commandTimeoutMs, callback)
    }

    /// `redirects` counts MOVED and ASK followed (see ClusterReply.maxRedirects);
    /// `retries` the TRYAGAIN and CLUSTERDOWN answers (bounded by `giveUpAt`).
    @inline(never)
    private func dispatch(_ args: [String], to node: RedisEndpoint.Node, redirects: Int = 0, retries: Int = 0,
                          asking: Bool = false, giveUpAt: Int64,
                          _ callback: @escaping (Result<RedisReply, RedisError>) -> Void) {
        let link = self.link(node)
        if link.isConnecting {
            // A node just named (a new primary, a redirection's target): wait
            // for its link rather than fail a command that has time left.
            let delay = ClusterReply.retryDelayMs(after: retries)
            if Clock.monotonicMillis() + Int64(delay) < giveUpAt {
                owner.loop.after(milliseconds: delay) { [weak self] in
                    guard let self else { return callback(.failure(.connection("connection closed"))) }
                    dispatch(args, to: node, redirects: redirects, retries: retries + 1, asking: asking,
                             giveUpAt: giveUpAt, callback)
                }
                return
            }
        }
        written.insert(node)
        if asking { link.sendRaw(["ASKING"]) { _ in } }
        link.sendRaw(args) { [weak self] result in
            guard let self, case .success(let reply) = result,
                  let redirect = ClusterReply(reply, askedAt: node, redirects: redirects) else { return callback(result) }
            switch redirect {
            case .moved(_, let to):
                ClusterTopology.requestRefresh()
                dispatch(args, to: to, redirects: redirects + 1, retries: retries, giveUpAt: giveUpAt, callback)
            case .ask(_, let to):
                dispatch(args, to: to, redirects: redirects + 1, retries: retries, asking: true, giveUpAt: giveUpAt,
                         callback)
            case .tryAgain:
                let delay = ClusterReply.retryDelayMs(after: retries)
                guard Clock.monotonicMillis() + Int64(delay) < giveUpAt else { return callback(result) }
                owner.loop.after(milliseconds: delay) { [weak self] in
                    guard let self else { return callback(result) }
                    // Sent where the slot lives now: the map may have changed meanwhile.
                    let again = ClusterSlot.of(command: args).flatMap { self.map?.primary(forSlot: $0) } ?? node
                    dispatch(args, to: again, redirects: 0, retries: retries + 1, giveUpAt: giveUpAt, callback)
                }
            }
        }
    }

    /// `WAIT n ms` on every primary written to since the last one; answers
    /// the smallest count (or the first failure).
    @inline(never)
    private func waitForReplicas(_ args: [String], _ callback: @escaping (Result<RedisReply, RedisError>) -> Void) {
        let nodes = written.isEmpty ? Array(map?.primaries.prefix(1) ?? []) : Array(written)
        written = []
        guard !nodes.isEmpty else { return callback(.failure(.connection("the Redis Cluster slot map is not known yet"))) }
        var left = nodes.count
        var fewest = Int64.max
        var failure: Result<RedisReply, RedisError>?
        for node in nodes {
            // A primary written to that has left the map (it failed): those
            // writes' fate is unknown, so the wait fails.
            guard links[node] != nil else {
                left -= 1
                if failure == nil { failure = .failure(.connection("\(node.address) left the cluster")) }
                if left == 0 { callback(failure!) }
                continue
            }
            link(node).sendRaw(args) { result in
                switch result {
                case .success(.integer(let n)): fewest = min(fewest, n)
                default: if failure == nil { failure = result }
                }
                left -= 1
                if left == 0 { callback(failure ?? .success(.integer(fewest))) }
            }
        }
    }
}

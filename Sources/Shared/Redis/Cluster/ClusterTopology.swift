import Logging
import Synchronization

/// The slot map of the process' Redis Cluster, shared by all its connections.
///
/// Read with `current`; loaded at first use (`load`) from the nodes known
/// and the seed nodes of the URL, asking each in turn until one answers
/// `CLUSTER SLOTS`. Loaded again when a connection meets `MOVED` (a slot
/// moved), loses a node (a failover promotes a replica), or finds a slot with
/// no primary; and by the watch thread every `watchIntervalMs`, so that a
/// primary added or promoted is known before any command needs it.
///
/// Why one map per process: a worker has a connection per fetch loop and an
/// API one per event loop; one map asked of Redis once per change serves
/// them all, and `epoch` tells each connection that it changed.
public enum ClusterTopology {
    /// Bumped each time the map changes.
    public static let epoch = Atomic<Int>(0)
    private static let lock = Lock()
    nonisolated(unsafe) private static var map: ClusterMap?
    nonisolated(unsafe) private static var seeds: RedisEndpoint?
    /// Set by `requestRefresh`: the watch thread loads the map at once.
    private static let refreshWanted = Atomic<Bool>(false)
    /// How often the watch thread loads the map even when nobody asked.
    static let watchIntervalMs: Int64 = 1000
    /// How long each node is given to answer `CLUSTER SLOTS`.
    static let askTimeoutMs = 500

    /// The map loaded last, nil before the first load.
    public static var current: ClusterMap? { lock.locked { map } }

    /// The map now: the one loaded, else loaded now from `endpoint`'s nodes
    /// (blocking; never on an event-loop thread, where `current` is used).
    public static func mapOrLoad(_ endpoint: RedisEndpoint) throws -> ClusterMap {
        if let map = current { return map }
        return try load(endpoint)
    }

    /// Asks the nodes known, then the seeds, for `CLUSTER SLOTS`; keeps the
    /// first good answer. Throws, naming what each node said, when none gave one.
    @discardableResult
    public static func load(_ endpoint: RedisEndpoint) throws -> ClusterMap {
        guard let seedNodes = endpoint.cluster else { throw RedisError.connection("not a cluster endpoint") }
        lock.locked { if seeds == nil { seeds = endpoint } }
        var candidates = current?.primaries ?? []
        for seed in seedNodes where !candidates.contains(seed) { candidates.append(seed) }
        var problems: [String] = []
        for node in candidates {
            let connection = RedisConnection(endpoint: endpoint.clusterNode(node), commandTimeoutMs: askTimeoutMs,
                                             requiresPrimary: false)
            defer { connection.disconnect() }
            do {
                let reply = try connection.command(["CLUSTER", "SLOTS"])
                guard let fresh = ClusterMap(slotsReply: reply, askedHost: node.host) else {
                    problems.append("\(node.address): \(reply)")
                    continue
                }
                install(fresh)
                return fresh
            } catch {
                problems.append("\(error)")
            }
        }
        throw RedisError.connection("no Redis Cluster node answered CLUSTER SLOTS: " + problems.joined(separator: "; "))
    }

    private static func install(_ fresh: ClusterMap) {
        let changed = lock.locked { () -> Bool in
            let before = map
            map = fresh
            return before.map { !$0.sameAs(fresh) } ?? true
        }
        if changed { epoch.add(1, ordering: .releasing) }
    }

    /// Has the watch thread load the map soon (from an event-loop thread,
    /// which must not block).
    public static func requestRefresh() { refreshWanted.store(true, ordering: .releasing) }

    /// The map is stale: the watch thread loads it, or (in a process without
    /// one: tools, tests) the caller does now. Why not every caller: after a
    /// failover each worker thread would ask every node in turn, each bounded
    /// by `askTimeoutMs`, all at once.
    static func refreshSoon(_ endpoint: RedisEndpoint) {
        if watching.load(ordering: .acquiring) {
            requestRefresh()
        } else {
            _ = try? load(endpoint)
        }
    }
    private static let watching = Atomic<Bool>(false)

    /// Starts the thread that keeps the map fresh, for a cluster endpoint
    /// only (nil for any other). It loads the map at once.
    /// The first load is made before it returns, so that the process'
    /// first requests find the map (a failure is logged and tried again).
    public static func startWatch(_ endpoint: RedisEndpoint, logger: Logger) -> BackgroundThread? {
        guard endpoint.cluster != nil else { return nil }
        _ = try? load(endpoint)
        watching.store(true, ordering: .releasing)
        return BackgroundThread(name: "spool-cluster") {
            var lastLoad: Int64 = 0
            var lastProblem: String?
            while true {
                let now = Clock.monotonicMillis()
                if refreshWanted.exchange(false, ordering: .acquiringAndReleasing) || now - lastLoad >= watchIntervalMs {
                    lastLoad = now
                    do {
                        let before = epoch.load(ordering: .acquiring)
                        let map = try load(endpoint)
                        if epoch.load(ordering: .acquiring) != before {
                            logger.notice("Redis Cluster slot map loaded",
                                          metadata: ["primaries": "\(map.primaries.map(\.address).joined(separator: ","))",
                                                     "unserved_slots": "\(map.unservedSlots)"])
                        }
                        lastProblem = nil
                    } catch {
                        if lastProblem != "\(error)" { logger.error("\(error)") }
                        lastProblem = "\(error)"
                    }
                }
                Clock.sleep(milliseconds: 20)
            }
        }
    }

    /// Another node of the cluster for a connection that needs any one
    /// (pub/sub): the primaries known, or the seeds, taken in turn.
    static func anyNode(_ endpoint: RedisEndpoint) -> RedisEndpoint.Node {
        let nodes = current?.primaries ?? endpoint.cluster ?? []
        guard !nodes.isEmpty else { return RedisEndpoint.Node(host: endpoint.host, port: endpoint.port) }
        return nodes[turn.add(1, ordering: .relaxed).newValue % nodes.count]
    }
    private static let turn = Atomic<Int>(0)
}

extension ClusterMap {
    func sameAs(_ other: ClusterMap) -> Bool {
        primaries == other.primaries && (0..<ClusterSlot.count).allSatisfy { primary(forSlot: $0) == other.primary(forSlot: $0) }
    }
}

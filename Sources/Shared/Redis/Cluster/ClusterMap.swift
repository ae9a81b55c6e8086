/// Which primary serves each slot, as `CLUSTER SLOTS` reported it.
public struct ClusterMap: Sendable {
    /// The primaries, in the order the reply named them.
    public let primaries: [RedisEndpoint.Node]
    /// For each slot, an index into `primaries`; -1 when no node serves it.
    private let owners: [Int16]

    /// The primary serving `slot`, nil when none does (the cluster is down
    /// for that slot).
    public func primary(forSlot slot: Int) -> RedisEndpoint.Node? {
        let i = owners[slot]
        return i < 0 ? nil : primaries[Int(i)]
    }

    /// Reads a `CLUSTER SLOTS` reply: ranges `[first, last, [host, port, id],
    /// replicas...]`. An empty or null host means the node that answered
    /// (`askedHost`); `?` (the node has no endpoint of the type asked for)
    /// leaves the range unserved. Nil when the reply has another shape or
    /// assigns no slot.
    init?(slotsReply reply: RedisReply, askedHost: String) {
        guard case .array(let ranges) = reply else { return nil }
        var primaries: [RedisEndpoint.Node] = []
        var owners = [Int16](repeating: -1, count: ClusterSlot.count)
        for range in ranges {
            guard case .array(let parts) = range, parts.count >= 3,
                  let first = parts[0].int, let last = parts[1].int, first >= 0, last < ClusterSlot.count, first <= last,
                  case .array(let master) = parts[2], master.count >= 2, let port = master[1].int else { return nil }
            let host = master[0].string ?? ""
            if host == "?" { continue }
            let node = RedisEndpoint.Node(host: host.isEmpty ? askedHost : host, port: Int(port))
            let index: Int
            if let known = primaries.firstIndex(of: node) {
                index = known
            } else {
                index = primaries.count
                primaries.append(node)
            }
            for slot in Int(first)...Int(last) { owners[slot] = Int16(index) }
        }
        guard !primaries.isEmpty else { return nil }
        self.primaries = primaries
        self.owners = owners
    }

    /// How many slots no primary serves.
    public var unservedSlots: Int { owners.lazy.filter { $0 < 0 }.count }
}

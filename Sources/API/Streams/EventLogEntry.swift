import Shared

/// A Redis stream entry id, `ms-seq`: the id of every event a stream sends,
/// and what `Last-Event-ID` and `?after=` name.
struct EventID: Comparable, Sendable {
    let ms: UInt64
    let seq: UInt64

    static let zero = EventID(ms: 0, seq: 0)

    var text: String { "\(ms)-\(seq)" }

    /// Only the full `digits-digits` form, as this API sends it.
    init?(_ text: String) {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...20).contains(parts[0].count), (1...20).contains(parts[1].count),
              parts.allSatisfy({ $0.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 } }),
              let ms = UInt64(parts[0]), let seq = UInt64(parts[1]) else { return nil }
        self.init(ms: ms, seq: seq)
    }

    init(ms: UInt64, seq: UInt64) {
        self.ms = ms
        self.seq = seq
    }

    static func < (a: EventID, b: EventID) -> Bool { (a.ms, a.seq) < (b.ms, b.seq) }
}

/// One entry of an event log as XRANGE returns it (fields in EventLogLua).
struct EventLogEntry {
    let id: EventID
    let fields: [String: String]

    /// The entries of an XRANGE reply; malformed ones are skipped.
    static func parse(_ reply: RedisReply) -> [EventLogEntry] {
        guard let items = reply.array else { return [] }
        var out: [EventLogEntry] = []
        out.reserveCapacity(items.count)
        for item in items {
            guard let pair = item.array, pair.count == 2, let idText = pair[0].string, let id = EventID(idText),
                  let flat = pair[1].array else { continue }
            var fields: [String: String] = [:]
            var i = 0
            while i + 1 < flat.count {
                if let k = flat[i].string, let v = flat[i + 1].string { fields[k] = v }
                i += 2
            }
            out.append(EventLogEntry(id: id, fields: fields))
        }
        return out
    }

    var kind: String { fields["t"] ?? "" }

    /// When it happened: the `at` field of entries written after the fact,
    /// else the time in its id.
    var atMicros: Int64 {
        if let at = fields["at"], let us = Int64(at) { return us }
        return Int64(clamping: id.ms) * 1000
    }
}

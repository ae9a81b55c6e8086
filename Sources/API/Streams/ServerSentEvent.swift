import Shared

/// The server-sent events a stream writes (text/event-stream): `id:`,
/// `event:`, and JSON `data:` lines, for job logs and queue logs alike.
enum ServerSentEvent {
    /// One event. A JSON text that spans several lines (a handler's pretty
    /// result) becomes several `data:` lines, which clients join again.
    static func bytes(id: EventID?, event: String, json: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(json.count + 64)
        if let id { out += Array("id: \(id.text)\n".utf8) }
        out += Array("event: \(event)\ndata: ".utf8)
        var i = 0
        while i < json.count {
            let b = json[i]
            if b == 0x0D || b == 0x0A {
                if b == 0x0D && i + 1 < json.count && json[i + 1] == 0x0A { i += 1 }
                out += Array("\ndata: ".utf8)
            } else {
                out.append(b)
            }
            i += 1
        }
        out += [0x0A, 0x0A]
        return out
    }

    /// A comment line, which clients ignore and proxies count as traffic.
    static let keepalive = Array(": keepalive\n\n".utf8)

    /// The event a job log entry becomes, and whether it ends the stream (a
    /// terminal state). Nil for entries readers do not see.
    static func job(_ entry: EventLogEntry, of job: JobID) -> (bytes: [UInt8], terminal: Bool)? {
        let f = entry.fields
        var w = JSONWriter()
        w.beginObject()
        let name: String
        var terminal = false
        func opened(_ key: String, as field: String) -> String? {
            guard let value = f[key], !value.isEmpty else { return nil }
            guard FieldCipher.isSealed(value) else { return value }
            return try? FieldCipher.shared?.open(value, job: job.text, field: field)
        }
        switch entry.kind {
        case "state":
            let state = f["s"] ?? ""
            name = "state"
            w.field("state", state)
            w.field("attempt", Int(f["a"] ?? "") ?? 0)
            w.field("at", Timestamp.format(micros: entry.atMicros))
            if let e = opened("e", as: JobField.error) { w.rawField("error", e) }
            if let r = f["r"], let us = Int64(r) { w.field("run_at", Timestamp.format(micros: us)) }
            if state == JobState.succeeded.rawValue { w.rawField("result", opened("d", as: JobField.result) ?? "null") }
            terminal = JobState(rawValue: state)?.isTerminal ?? false
        case "progress", "chunk", "event":
            let kind = entry.kind
            name = kind == "event" ? (f["n"] ?? "event") : kind
            w.field("attempt", Int(f["a"] ?? "") ?? 0)
            w.field("at", Timestamp.format(micros: entry.atMicros))
            let value = opened("d", as: kind == "progress" ? JobField.progress : JobEventField.data) ?? "null"
            w.rawField(kind == "event" ? "data" : kind, value)
        case "dropped":
            name = "dropped"
            w.field("attempt", Int(f["a"] ?? "") ?? 0)
            w.field("at", Timestamp.format(micros: entry.atMicros))
            w.field("reason", f["d"] ?? "")
        default:
            return nil
        }
        w.endObject()
        return (bytes(id: entry.id, event: name, json: w.bytes), terminal)
    }

    /// The event a queue log entry becomes; nil for entries readers do not
    /// see, and for another client's jobs when `client` is set.
    static func queue(_ entry: EventLogEntry, client: String?) -> [UInt8]? {
        let f = entry.fields
        guard let id = f["id"], let state = f["s"] else { return nil }
        if let client, f["c"] != client { return nil }
        var w = JSONWriter()
        w.beginObject()
        w.field("id", id)
        w.field("state", state)
        w.field("attempt", Int(f["a"] ?? "") ?? 0)
        w.field("at", Timestamp.format(micros: entry.atMicros))
        w.endObject()
        return bytes(id: entry.id, event: "state", json: w.bytes)
    }

    /// The last event of a stream cut off because its client reads too slowly.
    static func cutoff(after: EventID, maxBuffered: Int) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.field("resume_after", after.text)
        w.field("reason", "the client read too slowly (over \(maxBuffered) bytes unsent): reconnect with Last-Event-ID or ?after=")
        w.endObject()
        return bytes(id: after == .zero ? nil : after, event: "cutoff", json: w.bytes)
    }

    /// Told first to a queue follower whose `after` is older than the log keeps.
    static func gap(after: EventID) -> [UInt8] {
        var w = JSONWriter()
        w.beginObject()
        w.field("reason", "events after \(after.text) are no longer kept (the queue log is capped and lives only while followed)")
        w.endObject()
        return bytes(id: nil, event: "dropped", json: w.bytes)
    }
}

import Shared

/// A handler's streamed output: chunks and named events, batched into the
/// job's event log (AppendEventsCall).
///
/// Batching and back-pressure come from one rule: the job's thread writes
/// what it has read before it reads again. A command handler's output is read
/// 64 KiB at a time; the lines of one read go to Redis in one call (or a few,
/// at most `maxBatchEntries` each) while the handler's further writes wait in
/// its pipe, and block it when the pipe is full. Memory stays bounded by one
/// read, however fast the handler writes.
extension JobContext {
    /// Most entries, and bytes, in one call to Redis.
    static let maxBatchEntries = 512
    static let maxBatchBytes = 256 << 10

    /// Event names the stream itself uses, which a handler's events may not take.
    static let reservedEventNames: Set<String> = ["state", "progress", "chunk", "dropped", "cutoff"]

    static func isEventName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count), !reservedEventNames.contains(name) else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == 0x5F || b == 0x2D || b == 0x2E || b == 0x3A
        }
    }

    /// A piece of partial output (any JSON), in order.
    func emitChunk(_ value: JSONValue) {
        queueEvent(AppendEventsCall.Entry(kind: .chunk, data: value.jsonText))
    }

    /// A named event of the application's with any JSON data. The name must
    /// pass `isEventName` (checked by the caller).
    func emitEvent(_ name: String, data: JSONValue) {
        queueEvent(AppendEventsCall.Entry(kind: .event, name: name, data: data.jsonText))
    }

    private func queueEvent(_ entry: AppendEventsCall.Entry) {
        unflushedEvents.append(entry)
        unflushedEventBytes += entry.data.utf8.count + entry.name.utf8.count
        if unflushedEvents.count >= JobContext.maxBatchEntries || unflushedEventBytes >= JobContext.maxBatchBytes { flushEvents() }
    }

    /// Writes every unwritten entry, in order (the caller's thread waits).
    func flushEvents() {
        guard !unflushedEvents.isEmpty else { return }
        let batch = unflushedEvents
        unflushedEvents = []
        unflushedEventBytes = 0
        eventsSink?(batch)
    }
}

import Shared
import Synchronization

/// What a handler can see and do while it runs: the attempt, its deadline,
/// and whether it has been told to stop.
final class JobContext {
    let attempt: Int
    /// Monotonic ms after which the job has timed out.
    let deadline: Int64
    let timeoutMs: Int64
    private let stopGate = Latch()
    fileprivate let lock = Lock()
    private var reason: StopReason?
    /// Stores progress JSON in Redis; set by the runner, called on the job's thread.
    var progressSink: ((String) -> Void)?
    /// Reports a problem with the handler's progress output.
    var onMalformedProgress: ((String) -> Void)?
    fileprivate var unflushedProgress: String?
    /// Malformed progress lines of this run (on the job's thread only).
    fileprivate(set) var malformedLines = 0
    fileprivate var lastProgressFlush: Int64 = 0
    /// Streamed output (chunks, named events) not yet in Redis, on the job's
    /// thread only; `eventsSink` writes a batch of it (JobContext+Streaming).
    var unflushedEvents: [AppendEventsCall.Entry] = []
    var unflushedEventBytes = 0
    var eventsSink: (([AppendEventsCall.Entry]) -> Void)?
    /// What the handler reported on fd 3 (on the job's thread only): the
    /// units it really used (`{"usage": n}`), and a provider's back-off
    /// (`{"retry_after_ms": n}`); the last report of each wins.
    var usage: Int64?
    var retryAfterMs: Int64?
    static let usageRange: ClosedRange<Int64> = 0...1_000_000_000_000
    static let retryAfterRange: ClosedRange<Int64> = 1...86_400_000

    init(attempt: Int, timeoutMs: Int64) {
        self.attempt = attempt
        self.timeoutMs = timeoutMs
        self.deadline = Clock.monotonicMillis() + timeoutMs
    }

    /// Monotonic ms by which a stopped handler must be gone even if its kill
    /// grace runs longer (a lease about to expire: see LeaseWatchdog).
    private var killBy: Int64?

    /// Tells the handler to stop; the first reason given wins. `killBy`
    /// (monotonic ms) cuts the kill grace short: SIGKILL comes no later.
    func stop(_ why: StopReason, killBy: Int64? = nil) {
        lock.locked {
            if reason == nil { reason = why }
            if let k = killBy { self.killBy = min(self.killBy ?? k, k) }
        }
        stopGate.open()
    }

    var killDeadline: Int64? { lock.locked { killBy } }

    /// The handler returned; what is left is reporting the outcome. An atomic,
    /// not the lock: set once per job on the hot path, read by the watchdog.
    private let handlerReturned = Atomic<Bool>(false)
    func markHandlerFinished() { handlerReturned.store(true, ordering: .releasing) }
    var handlerFinished: Bool { handlerReturned.load(ordering: .acquiring) }

    var stopReason: StopReason? { lock.locked { reason } }

    /// Waits up to `ms` or until told to stop, or until the deadline (which
    /// then stops the job with a timeout). Returns the stop reason, if any.
    func sleep(ms: Int64) -> StopReason? {
        let now = Clock.monotonicMillis()
        let untilDeadline = deadline - now
        if ms < untilDeadline {
            return stopGate.wait(timeoutMs: ms) ? stopReason : nil
        }
        if !stopGate.wait(timeoutMs: max(0, untilDeadline)) { stop(.timeout(timeoutMs)) }
        return stopReason
    }

    /// Checks the deadline; stops the job with a timeout once it has passed.
    func checkDeadline() -> StopReason? {
        if Clock.monotonicMillis() >= deadline { stop(.timeout(timeoutMs)) }
        return stopReason
    }
}

extension JobContext {
    /// Least time between two progress writes to Redis; a handler may report
    /// far more often, and only the latest report is kept.
    static let progressFlushIntervalMs: Int64 = 200

    /// Malformed progress lines logged per job at most; the rest are counted
    /// (a handler writing binary to fd 3 must not flood the log).
    static let malformedLinesLogged = 3

    /// A line a handler wrote on fd 3: `{"progress": {...}}` updates the
    /// job's progress, `{"chunk": ...}` and `{"event": "name", "data": ...}`
    /// go to its event log; anything else is logged and ignored, never fatal.
    func progressLine(_ line: [UInt8]) {
        guard let value = try? JSONParser.parse(line), value.objectMembers != nil else {
            return malformed(line, "not a JSON object")
        }
        if let progress = value["progress"], progress.objectMembers != nil {
            return reportProgress(current: progress["current"], total: progress["total"], message: progress["message"]?.stringValue)
        }
        if let chunk = value["chunk"] { return emitChunk(chunk) }
        if let reported = value["usage"] {
            guard let n = reported.integerValue, JobContext.usageRange.contains(n) else {
                return malformed(line, "usage must be a whole number of units from 0 to \(JobContext.usageRange.upperBound)")
            }
            usage = n
            return
        }
        if let after = value["retry_after_ms"] {
            guard let n = after.integerValue, JobContext.retryAfterRange.contains(n) else {
                return malformed(line, "retry_after_ms must be a whole number from 1 to \(JobContext.retryAfterRange.upperBound)")
            }
            retryAfterMs = n
            return
        }
        if let name = value["event"] {
            guard let text = name.stringValue, JobContext.isEventName(text) else {
                return malformed(line, "an event name is 1 to 64 letters, digits, '_', '-', '.' or ':', and not one of "
                                    + JobContext.reservedEventNames.sorted().joined(separator: ", "))
            }
            return emitEvent(text, data: value["data"] ?? .null)
        }
        malformed(line, "none of {\"progress\": {...}}, {\"chunk\": ...}, {\"event\": \"name\", \"data\": ...}, "
                  + "{\"usage\": n}, {\"retry_after_ms\": n}")
    }

    private func malformed(_ line: [UInt8], _ why: String) {
        report("ignored a line on fd 3 (\(why)): \(JobContext.printable(line, max: 120))")
    }

    /// A line of a persistent handler that was not for the running job, or not JSON.
    func ignoredOutput(_ line: [UInt8], why: String) {
        report("ignored a line (\(why)): \(JobContext.printable(line, max: 120))")
    }

    /// A line on fd 3 grew past `limit` bytes without a newline: it is
    /// dropped whole (never cut and half-read).
    func droppedOverlongLine(limit: Int) {
        report("dropped a line on fd 3 longer than \(limit) bytes")
    }

    private func report(_ message: String) {
        malformedLines += 1
        guard malformedLines <= JobContext.malformedLinesLogged else { return }
        let more = malformedLines == JobContext.malformedLinesLogged ? " (further malformed lines of this run are only counted)" : ""
        onMalformedProgress?(message + more)
    }

    /// At most `max` bytes of a line as printable ASCII, other bytes as `\xNN`.
    static func printable(_ line: [UInt8], max: Int) -> String {
        var out = ""
        for b in line.prefix(max) {
            if b >= 0x20 && b < 0x7F { out.unicodeScalars.append(Unicode.Scalar(b)) } else {
                let hex = String(b, radix: 16)
                out += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return line.count > max ? out + "… (\(line.count) bytes)" : out
    }

    /// Progress from a handler (built-in handlers call this directly).
    func reportProgress(current: JSONValue?, total: JSONValue?, message: String?) {
        var w = JSONWriter()
        w.beginObject()
        w.field("current", JobContext.number(current))
        w.field("total", JobContext.number(total))
        w.field("message", message.map { String($0.prefix(1000)) })
        w.field("updated_at", Timestamp.format(millis: Clock.nowMillis()))
        w.endObject()
        lock.locked { unflushedProgress = w.text }
        flushProgress(force: false)
    }

    /// Writes the latest unwritten progress if the interval has passed (or `force`).
    func flushProgress(force: Bool) {
        let now = Clock.monotonicMillis()
        let due: String? = lock.locked {
            guard let p = unflushedProgress, force || now - lastProgressFlush >= JobContext.progressFlushIntervalMs else { return nil }
            unflushedProgress = nil
            lastProgressFlush = now
            return p
        }
        guard let due else { return }
        // Output streamed before this progress goes first: one order in the log.
        flushEvents()
        progressSink?(due)
    }

    private static func number(_ v: JSONValue?) -> JSONValue {
        if case .number? = v { return v! }
        return .null
    }
}

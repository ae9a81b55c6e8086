import Shared

/// Runs one kind of job. A handler is called on a fetch-loop thread and may
/// block; it must return when `context` is stopped (cancel, timeout, lost
/// lease, shutdown) or soon after.
protocol JobHandler {
    func run(_ job: Job, _ context: JobContext) -> HandlerOutcome
}

/// How a run ended.
enum HandlerOutcome: Equatable {
    /// Success, with the result as JSON text.
    case success(String)
    /// Failure; `retry: false` sends the job to the dead set at once.
    case failure(String, retry: Bool)
}

/// Why a running job was told to stop.
enum StopReason: Equatable, CustomStringConvertible {
    case timeout(Int64)
    case leaseLost
    case cancelled
    case shutdown

    var description: String {
        switch self {
        case .timeout(let ms): return "timed out after \(ms) ms"
        case .leaseLost: return "lease lost: the job was recovered by another worker"
        case .cancelled: return "cancelled"
        case .shutdown: return "worker shutting down"
        }
    }
}

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
    /// The last progress object the handler reported, not yet stored.
    fileprivate(set) var latestProgress: JSONValue?
    fileprivate(set) var malformedProgressLines = 0

    init(attempt: Int, timeoutMs: Int64) {
        self.attempt = attempt
        self.timeoutMs = timeoutMs
        self.deadline = Clock.monotonicMillis() + timeoutMs
    }

    /// Tells the handler to stop; the first reason given wins.
    func stop(_ why: StopReason) {
        lock.locked { if reason == nil { reason = why } }
        stopGate.open()
    }

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
    /// A line a handler wrote on fd 3. `{"progress": {...}}` lines update the
    /// job's progress; anything else is counted and ignored, never fatal.
    func progressLine(_ line: [UInt8]) {
        guard let value = try? JSONParser.parse(line), let progress = value["progress"], progress.objectMembers != nil else {
            lock.locked { malformedProgressLines += 1 }
            return
        }
        lock.locked { latestProgress = progress }
    }
}

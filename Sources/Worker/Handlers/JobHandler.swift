import Shared
import Synchronization

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
    /// The lease could not be renewed (Redis out of reach) and would expire
    /// before the next chance: stopped so the job does not run twice at once.
    case leaseExpiring
    case cancelled
    case shutdown

    var description: String {
        switch self {
        case .timeout(let ms): return "timed out after \(ms) ms"
        case .leaseLost: return "lease lost: the job was recovered by another worker"
        case .leaseExpiring: return "lease about to expire unrenewed (Redis out of reach): stopped before another worker may take the job"
        case .cancelled: return "cancelled"
        case .shutdown: return "worker shutting down"
        }
    }
}

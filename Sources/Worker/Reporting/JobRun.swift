import Logging
import Shared

/// How running one claimed job ended: what JobRunner hands JobReporter to
/// store.
struct JobRun {
    enum Ending {
        /// The handler succeeded with this result (JSON text).
        case succeeded(result: String)
        /// The handler failed; nil delay: no retry (the job goes to dead).
        case failed(message: String, retryDelayMs: Int64?)
        /// The run was stopped (shutdown, cancel, lost lease) and its end is
        /// recorded elsewhere, or not at all: nothing to store.
        case stopped
    }

    let job: Job
    /// The attempt this run was (the claim's count).
    let attempt: Int
    let ending: Ending
    /// Units the handler reported it used (`{"usage": n}`), settled with its limit.
    var usage: Int64? = nil
    /// The provider asked to wait this long (`{"retry_after_ms": n}` and a
    /// failing exit): the job runs again after it without using an attempt,
    /// and its limit pauses as long.
    var retryAfterMs: Int64? = nil
    /// What identifies the job in every log line about it, with the run's duration.
    let logMetadata: Logger.Metadata
}

import Shared

/// Who waits for the next scheduled job of this process.
///
/// BLPOP cannot time a due job precisely: Redis checks blocked clients'
/// timeouts on its event-loop tick (100 ms at the default `hz 10`). So one idle
/// fetch loop at a time claims the earliest due time and waits for it locally
/// with a precise timer, while the other idle loops stay blocked on the wake
/// list and keep answering new jobs within a millisecond.
///
/// The claimant does not hear wake tokens, so it only claims when another loop
/// is listening, or when the wait is no longer than BLPOP's own imprecision.
final class DueTimer {
    static let deafWaitMaxMs: Int64 = 100

    private let lock = Lock()
    /// Monotonic ms the current claimant wakes at; nil when nobody waits.
    private var claimedAt: Int64?
    /// Fetch loops now blocked on the wake lists.
    private var listening = 0

    func startListening() { lock.locked { listening += 1 } }
    func stopListening() { lock.locked { listening -= 1 } }

    /// Claims the wait for `dueAt` (in `waitMs`) when nobody waits for an
    /// earlier time and new jobs will still be heard.
    func claim(_ dueAt: Int64, waitMs: Int64) -> Bool {
        lock.locked {
            if let current = claimedAt, current <= dueAt { return false }
            if listening == 0 && waitMs > DueTimer.deafWaitMaxMs { return false }
            claimedAt = dueAt
            return true
        }
    }

    /// Gives the claim up (if it is still this time's).
    func release(_ dueAt: Int64) {
        lock.locked { if claimedAt == dueAt { claimedAt = nil } }
    }
}

import Shared

/// Group commit (GroupCommit) for the successes of one queue: those that a
/// worker's loops report while another report of the queue is on its way to
/// Redis are sent together in the next one (CompleteAndFetchCall), on the
/// leading loop's connection (JobReporter.sendBatch).
final class CompletionBatcher {
    /// What a loop gets back for its success.
    struct Answer {
        /// Stored, or dropped because the lease was lost.
        let stored: Bool
        /// What the same call claimed for the loop (only with `claimsNextJobs`):
        /// a job to run, or one whose hash is damaged, for the loop to fail.
        private(set) var next: FetchCall.Outcome?
        /// When that call was sent: the claimed job's lease started no earlier.
        let sentAt: Int64
        /// The leader also gave back the run's limit slot (its `release`).
        var released = false
        /// The leader also took the next job's limit slot, or parked the job
        /// its limit refused (then `next` is nil): the loop runs `next` as is.
        var nextAdmitted = false

        /// The claimed job was parked behind its limit: the loop gets none.
        mutating func parked() {
            next = nil
            nextAdmitted = true
        }
    }

    let queue: String
    /// Whether the call that records a batch also claims one next job per
    /// report. Only in the worker's first queue: a claim in another queue would
    /// run its job before the first queue's, which the worker's order forbids.
    let claimsNextJobs: Bool
    /// Reports in flight at once (each on its leader's connection). A lone
    /// process needs two, to keep Redis busy while the previous answer is
    /// handed out. Under a supervisor the sibling processes' calls do that,
    /// and a second call per process only splits the batches: one each
    /// (measured, drain 2 processes × 16: 29k jobs/s with two, 32.6k with
    /// one; 1 × 16: 30k with two, 26k with one).
    private let commit: GroupCommit<(CompleteCall, LimitRelease?), Answer>

    init(queue: String, claimsNextJobs: Bool, maxInFlight: Int = 2) {
        self.queue = queue
        self.claimsNextJobs = claimsNextJobs
        commit = GroupCommit(maxWeight: CompleteAndFetchCall.maxBatch, maxInFlight: maxInFlight)
    }

    /// The function a leading loop sends a batch with: one answer per
    /// completion, in order (JobReporter.sendBatch).
    typealias Send = (CompletionBatcher, [CompleteCall], [LimitRelease?]) throws -> [Answer]

    /// Records a success of this queue, with others when they come together.
    /// Throws when the call carrying it failed; the caller retries.
    /// `release`: the run's limit slot, which the leader gives back with the
    /// batch's others (on one Redis in the batch's own call, CallLimits; on a
    /// cluster in a call per limit, LimitGate.settleBatch).
    func complete(_ completion: CompleteCall, release: LimitRelease? = nil, send: Send) throws -> Answer {
        try commit.submit((completion, release)) { items in try send(self, items.map(\.0), items.map(\.1)) }
    }
}

import Shared

/// Group commit for the successes of one queue: those that a worker's loops
/// report while another report of the queue is on its way to Redis are sent
/// together in the next one (CompleteAndFetchCall).
///
/// Why: per job, the round trip (two system calls on each side and a wake-up)
/// and the script's fixed cost weighed more than the job's own Redis work. A
/// lone report is never delayed: it goes out at once when no other is in flight.
///
/// There is no thread of its own. The loop that finds no report in flight
/// leads: its JobReporter sends the waiting reports (its own and other loops')
/// on its own connection, the batcher hands each loop its answer, and passes
/// the lead on if more reports queued up meanwhile.
final class CompletionBatcher {
    /// What a loop gets back for its success.
    struct Answer {
        /// Stored, or dropped because the lease was lost.
        let stored: Bool
        /// What the same call claimed for the loop (only with `claimsNextJobs`):
        /// a job to run, or one whose hash is damaged, for the loop to fail.
        let next: FetchCall.Outcome?
        /// When that call was sent: the claimed job's lease started no earlier.
        let sentAt: Int64
        /// The leader also gave back the run's limit slot (its `release`).
        var released = false
        /// The leader also took the next job's limit slot, or parked the job
        /// its limit refused (then `next` is nil): the loop runs `next` as is.
        var nextAdmitted = false
    }

    /// One loop's report, and the answer it waits for.
    private final class Request {
        let completion: CompleteCall
        let release: LimitRelease?
        var answer: Result<Answer, Error>?
        /// Its loop is sending a batch that did not take this request (more
        /// than 64 queued): it needs no wake-up to lead.
        var loopIsLeading = false
        let answered = Condition()

        init(_ completion: CompleteCall, _ release: LimitRelease?) {
            self.completion = completion
            self.release = release
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
    private let maxInFlight: Int
    private let mutex = Lock()
    private var queued: [Request] = []
    private var inFlight = 0

    init(queue: String, claimsNextJobs: Bool, maxInFlight: Int = 2) {
        self.queue = queue
        self.claimsNextJobs = claimsNextJobs
        self.maxInFlight = maxInFlight
    }

    /// The function a leading loop sends a batch with: one answer per
    /// completion, in order (JobReporter.sendBatch).
    typealias Send = (CompletionBatcher, [CompleteCall], [LimitRelease?]) throws -> [Answer]

    /// Records a success of this queue, with others when they come together.
    /// Throws when the call carrying it failed; the caller retries.
    /// `release`: the run's limit slot, which the leader gives back with the
    /// batch's others (LimitGate.settleBatch).
    func complete(_ completion: CompleteCall, release: LimitRelease? = nil, send: Send) throws -> Answer {
        let me = Request(completion, release)
        mutex.lock()
        defer { mutex.unlock() }
        queued.append(me)
        while me.answer == nil {
            if inFlight < maxInFlight && !queued.isEmpty {
                me.loopIsLeading = true
                lead(send)
                me.loopIsLeading = false
            } else {
                mutex.wait(me.answered)
            }
        }
        return try me.answer!.get()
    }

    /// Sends the queued reports (the mutex is held on entry and exit, not
    /// during the call) and answers each.
    private func lead(_ send: Send) {
        let batch = Array(queued.prefix(CompleteAndFetchCall.maxBatch))
        queued.removeFirst(batch.count)
        inFlight += 1
        mutex.unlock()
        let answers: [Result<Answer, Error>]
        do {
            answers = try send(self, batch.map(\.completion), batch.map(\.release)).map { .success($0) }
        } catch {
            answers = Array(repeating: .failure(error), count: batch.count)
        }
        mutex.lock()
        inFlight -= 1
        for (request, answer) in zip(batch, answers) { request.answer = answer }
        // Reports that queued up meanwhile: their first loop leads next.
        let nextLeader = inFlight < maxInFlight ? queued.first(where: { !$0.loopIsLeading }) : nil
        // Woken after the unlock, so that they do not wake only to wait for
        // the mutex (that contention showed in profiles). Each re-checks its
        // answer under the mutex, so no wake-up is lost.
        mutex.unlock()
        for request in batch { request.answered.signal() }
        nextLeader?.answered.signal()
        mutex.lock()
    }
}

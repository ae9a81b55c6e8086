#if canImport(Glibc)
import Glibc
#endif
import Shared

/// Group commit for a worker's busy loops: the successes that loops report
/// while another report is on its way to Redis are sent together in the next
/// one, which also claims each of those loops its next job
/// (CompleteAndFetchCall).
///
/// Why: per job, the round trip (two system calls on each side and a wake-up)
/// and the script's fixed cost weighed more than the job's own Redis work. A
/// lone report is never delayed: it goes out at once when no other is in flight.
///
/// There is no thread of its own. The loop that finds no report in flight
/// leads: it sends the waiting reports on its own connection, hands each loop
/// its answer, and passes the lead on if more reports queued up meanwhile.
final class CompletionBatcher {
    /// One loop's report, and the answer it waits for.
    private final class Request {
        let completion: CompleteCall
        var answer: Result<Answer, Error>?
        /// Its loop is sending a batch that did not take this request (more
        /// than 64 queued): it needs no wake-up to lead.
        var loopIsLeading = false
        let answered = Condition()

        init(_ completion: CompleteCall) { self.completion = completion }
    }

    /// Whether a success was stored, and the job claimed for the caller's
    /// loop by the same call (nil: none), with when that call was sent.
    struct Answer {
        let stored: Bool
        let next: FetchCall.Outcome?
        let sentAt: Int64
    }

    /// The worker's first queue: the one whose successes are batched.
    let queue: String
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

    init(queue: String, maxInFlight: Int = 2) {
        self.queue = queue
        self.maxInFlight = maxInFlight
    }

    /// Records the success of a job in the first queue and claims the
    /// caller's next job there (nil: none ready; the loop looks for itself).
    /// Throws when the call carrying it failed; the caller retries.
    func complete(_ completion: CompleteCall, via connection: ClaimingConnection) throws -> Answer {
        let me = Request(completion)
        mutex.lock()
        defer { mutex.unlock() }
        queued.append(me)
        while me.answer == nil {
            if inFlight < maxInFlight && !queued.isEmpty {
                me.loopIsLeading = true
                lead(via: connection)
                me.loopIsLeading = false
            } else {
                mutex.wait(me.answered)
            }
        }
        return try me.answer!.get()
    }

    /// Sends the queued reports (the mutex is held on entry and exit, not
    /// during the call) and answers each.
    private func lead(via connection: ClaimingConnection) {
        let batch = Array(queued.prefix(CompleteAndFetchCall.maxBatch))
        queued.removeFirst(batch.count)
        inFlight += 1
        mutex.unlock()
        let answers = send(batch, via: connection)
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

    private func send(_ batch: [Request], via connection: ClaimingConnection) -> [Result<Answer, Error>] {
        do {
            let out = try connection.completeAndFetch(batch.map(\.completion), claimLimit: batch.count)
            // Claimed jobs go to the first loops; the others (or all, when the
            // queue is empty or paused) get nil and look for work themselves.
            var jobs = out.claimed.filter {
                if case .empty = $0 { return false }
                if case .paused = $0 { return false }
                return true
            }.makeIterator()
            let sentAt = connection.lastSentAt
            return out.stored.map { .success(Answer(stored: $0, next: jobs.next(), sentAt: sentAt)) }
        } catch {
            return Array(repeating: .failure(error), count: batch.count)
        }
    }
}

import Shared

/// Group commit: what several fetch loops ask for while an earlier call is
/// on its way to Redis goes together in the next call. Used for a queue's
/// successes (CompletionBatcher) and a limit's acquires and releases
/// (LimitBatcher).
///
/// Why: per job, the round trip (two system calls on each side and a
/// wake-up) and a script's fixed cost weighed more than the job's own Redis
/// work. A lone request is never delayed: it goes out at once when fewer than
/// `maxInFlight` calls are on their way.
///
/// There is no thread of its own. The loop that finds room leads: it sends
/// the waiting requests (its own and other loops') on its own connection,
/// hands each loop its answer, and passes the lead on if more requests
/// queued up meanwhile.
final class GroupCommit<Item, Answer> {
    private final class Request {
        let item: Item
        let weight: Int
        var answer: Result<Answer, Error>?
        /// Its loop is sending a batch that did not take this request (the
        /// batch was full): it needs no wake-up to lead.
        var loopIsLeading = false
        let answered = Condition()

        init(_ item: Item, weight: Int) {
            self.item = item
            self.weight = weight
        }
    }

    /// Sends a batch: one answer per item, in order.
    typealias Send = ([Item]) throws -> [Answer]

    /// The most weight (operations, jobs) one call carries: keeps a script run short.
    private let maxWeight: Int
    private let maxInFlight: Int
    private let mutex = Lock()
    private var queued: [Request] = []
    private var inFlight = 0

    init(maxWeight: Int, maxInFlight: Int) {
        self.maxWeight = maxWeight
        self.maxInFlight = maxInFlight
    }

    /// Sends `item` with others that come together; its answer. Throws when
    /// the call carrying it failed.
    func submit(_ item: Item, weight: Int = 1, send: Send) throws -> Answer {
        let me = Request(item, weight: weight)
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

    /// Sends the queued requests (the mutex is held on entry and exit, not
    /// during the call) and answers each.
    private func lead(_ send: Send) {
        var batch: [Request] = []
        var weight = 0
        while let next = queued.first, batch.isEmpty || weight + next.weight <= maxWeight {
            batch.append(queued.removeFirst())
            weight += next.weight
        }
        inFlight += 1
        mutex.unlock()
        let answers: [Result<Answer, Error>]
        do {
            answers = try send(batch.map(\.item)).map { .success($0) }
        } catch {
            answers = Array(repeating: .failure(error), count: batch.count)
        }
        mutex.lock()
        inFlight -= 1
        for (request, answer) in zip(batch, answers) { request.answer = answer }
        // Requests that queued up meanwhile: their first loop leads next.
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

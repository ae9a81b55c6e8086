import Shared

/// Group commit for one limit's acquires and releases, as CompletionBatcher
/// is for a queue's successes: the operations a worker's loops ask for while
/// another call on the same limit is on its way to Redis go together in the
/// next one (LimitBatchCall). A lone operation is never delayed.
///
/// No thread of its own: the loop that finds no call in flight leads, sends
/// the waiting operations on its own connection and hands out the answers.
final class LimitBatcher {
    /// One loop's operations (a release and the next job's acquire go
    /// together), and the answers it waits for.
    private final class Request {
        let operations: [LimitBatchCall.Operation]
        var answer: Result<[AcquireLimitCall.Outcome?], Error>?
        var loopIsLeading = false
        let answered = Condition()

        init(_ operations: [LimitBatchCall.Operation]) { self.operations = operations }
    }

    /// Most operations in one call: keeps one script run short.
    static let maxBatch = 64
    private let maxInFlight = 2
    private let mutex = Lock()
    private var queued: [Request] = []
    private var inFlight = 0

    /// Sends a batch (on the leading loop's connection): one outcome per
    /// operation, in order (nil for a release).
    typealias Send = ([LimitBatchCall.Operation]) throws -> [AcquireLimitCall.Outcome?]

    /// Runs one operation, with others when they come together; the acquire's
    /// outcome (nil for a release). Throws when the call carrying it failed.
    func run(_ operation: LimitBatchCall.Operation, send: Send) throws -> AcquireLimitCall.Outcome? {
        try run([operation], send: send)[0]
    }

    /// Runs a loop's operations in order, in one call (with other loops').
    func run(_ operations: [LimitBatchCall.Operation], send: Send) throws -> [AcquireLimitCall.Outcome?] {
        let me = Request(operations)
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

    /// Sends the queued operations (the mutex is held on entry and exit, not
    /// during the call) and answers each.
    private func lead(_ send: Send) {
        var batch: [Request] = []
        var count = 0
        while let next = queued.first, batch.isEmpty || count + next.operations.count <= LimitBatcher.maxBatch {
            batch.append(queued.removeFirst())
            count += next.operations.count
        }
        inFlight += 1
        mutex.unlock()
        var answers: [Result<[AcquireLimitCall.Outcome?], Error>] = []
        do {
            var outcomes = try send(batch.flatMap(\.operations))[...]
            for request in batch {
                answers.append(.success(Array(outcomes.prefix(request.operations.count))))
                outcomes = outcomes.dropFirst(request.operations.count)
            }
        } catch {
            answers = Array(repeating: .failure(error), count: batch.count)
        }
        mutex.lock()
        inFlight -= 1
        for (request, answer) in zip(batch, answers) { request.answer = answer }
        let nextLeader = inFlight < maxInFlight ? queued.first(where: { !$0.loopIsLeading }) : nil
        mutex.unlock()
        for request in batch { request.answered.signal() }
        nextLeader?.answered.signal()
        mutex.lock()
    }
}

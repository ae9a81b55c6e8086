import Logging
import Shared

/// A fetch loop's own Redis connection, for everything the loop sends, and in
/// particular the calls that claim jobs (fetch, complete-and-fetch).
///
/// Each claiming call carries a new token and leaves a receipt in Redis. When
/// its reply is lost (the connection broke or timed out after the call was
/// sent, so it may have run), the receipt tells whether it ran: the jobs it
/// claimed, which no loop knows of, go back to the head of their queue, and the
/// completions it stored are known (SettleCall). Without this those jobs would
/// wait out their lease and lose an attempt they never ran.
final class ClaimingConnection {
    let redis: RedisConnection
    private let worker: WorkerContext
    /// One fetch call per queue, in the worker's order, built once.
    private let fetchCalls: [FetchCall]
    /// Calls sent so far: the last token used (each call takes the next).
    private var sent: UInt64 = 0

    /// `loop` numbers the loop within its worker (it names the receipt).
    init(worker: WorkerContext, loop: Int) {
        self.worker = worker
        redis = worker.newConnection()
        fetchCalls = worker.config.queues.map {
            FetchCall(schema: worker.schema, queue: $0, workerID: worker.id, leaseMs: worker.config.leaseMs,
                      loop: String(loop))
        }
    }

    var queueCount: Int { fetchCalls.count }

    /// When the call whose answer was returned last was sent (monotonic ms):
    /// the leases of the jobs it claimed started no earlier.
    private(set) var lastSentAt: Int64 = 0

    /// Claims the next job of the worker's queue number `index`.
    func fetch(queue index: Int) throws -> FetchCall.Outcome {
        // After a lost reply the call is settled (what it claimed given back),
        // then sent again.
        try sendClaiming(fetchCalls[index], { $0 }, answerIfRan: { _ in nil })
    }

    /// Records successes in the first queue and claims up to `claimLimit`
    /// jobs there. After a lost reply of a call that ran, its claims are given
    /// back and the answer has its stored flags and no claimed job.
    func completeAndFetch(_ completions: [CompleteCall], claimLimit: Int) throws -> CompleteAndFetchCall.Output {
        try sendClaiming(fetchCalls[0], { CompleteAndFetchCall(completions: completions, fetch: $0, claimLimit: claimLimit) },
                         answerIfRan: { stored in
                             // Sending again would find the completions stored and call them stale.
                             guard stored.count == completions.count else {
                                 throw RedisError.server("receipt of a lost call lists \(stored.count) completions, not \(completions.count)")
                             }
                             return CompleteAndFetchCall.Output(stored: stored, claimed: [])
                         })
    }

    /// Sends at most this many times when replies keep getting lost (each
    /// settled in between); then, or at shutdown, the error goes to the loop,
    /// which backs off.
    static let maxSends = 3

    /// Sends `build(fetch with a new token)`. When its reply is lost, settles
    /// it: if it ran, `answerIfRan(stored flags)` is the answer (nil: send
    /// again); if it did not, it is sent again. Throws when Redis cannot be
    /// reached, or after `maxSends` lost replies.
    private func sendClaiming<C: ScriptCall>(_ fetch: FetchCall, _ build: (FetchCall) -> C,
                                             answerIfRan: ([Bool]) throws -> C.Output?) throws -> C.Output {
        var sends = 0
        while true {
            // A failed connect sent nothing: nothing to settle.
            try redis.connect()
            let stamped = self.stamped(fetch)
            let sentAt = Clock.monotonicMillis()
            sends += 1
            do {
                let output = try redis.run(build(stamped))
                lastSentAt = sentAt
                return output
            } catch let error as RedisError {
                if case .server = error { throw error }
                switch settle(stamped, sentAt: sentAt) {
                case nil:
                    throw error
                case .ran(let stored, _)?:
                    if let answer = try answerIfRan(stored) { return answer }
                case .notRun?:
                    break
                }
                if sends >= ClaimingConnection.maxSends || worker.stopFetching.isSet { throw error }
            }
        }
    }

    private func stamped(_ call: FetchCall) -> FetchCall {
        sent &+= 1
        var c = call
        c.token = String(sent)
        return c
    }

    /// Asks the receipt whether the call `fetch` (or the call it was part of)
    /// ran, giving back what it claimed. Retries through an outage until the
    /// receipt may have expired (one lease from the send, less one command
    /// timeout); nil then: the claims return when their lease runs out.
    private func settle(_ fetch: FetchCall, sentAt: Int64) -> SettleCall.Settlement? {
        let giveUpAt = sentAt + worker.config.leaseMs - worker.config.redisTimeoutMs
        let settlement = worker.redisHealth.retrying(until: giveUpAt, { try redis.run(SettleCall(lost: fetch)) }) { error in
            worker.logger.error("could not settle a call whose reply was lost; jobs it claimed return when their lease expires",
                                metadata: ["queue": "\(fetch.queue)", "worker_id": "\(worker.id)", "error": "\(error)"])
        }
        if case .ran(_, let givenBack)? = settlement, !givenBack.isEmpty {
            worker.logger.warning("reply of a claiming call lost after it ran; its claimed jobs were given back", metadata: [
                "queue": "\(fetch.queue)", "worker_id": "\(worker.id)", "jobs": "\(givenBack.joined(separator: ","))",
            ])
        }
        return settlement
    }
}

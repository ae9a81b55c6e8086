import Shared

/// The receipt protocol's sending side (see JobReporter for the sequence):
/// each claiming call gets the next token; a lost reply is settled before
/// anything else is sent.
extension JobReporter {
    /// Records successes of the worker's queue number `index` and claims up
    /// to `claimLimit` jobs there. After a lost reply of a call that ran, its
    /// claims are given back and the answer has its stored flags and no job.
    func completeAndFetch(queue index: Int, _ completions: [CompleteCall], claimLimit: Int,
                          limits: CallLimits? = nil) throws -> CompleteAndFetchCall.Output {
        try sendClaiming(fetchCalls[index], { CompleteAndFetchCall(completions: completions, fetch: $0, claimLimit: claimLimit,
                                                                   limits: limits) },
                         answerIfRan: { stored in
                             // Sending again would find the completions stored and call them stale.
                             guard stored.count == completions.count else {
                                 throw RedisError.server("receipt of a lost call lists \(stored.count) completions, not \(completions.count)")
                             }
                             return CompleteAndFetchCall.Output(stored: stored, claimed: [])
                         })
    }

    /// Sends `build(fetch with a new token)`. When its reply is lost, settles
    /// it: if it ran, `answerIfRan(stored flags)` is the answer (nil: send
    /// again); if it did not, it is sent again. Throws when Redis cannot be
    /// reached, or after `maxSends` lost replies.
    func sendClaiming<C: ScriptCall>(_ fetch: FetchCall, _ build: (FetchCall) -> C,
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
                if sends >= JobReporter.maxSends || worker.stopFetching.isSet { throw error }
            }
        }
    }

    /// `fetch` sent behind the blocking `wait` in one write (see
    /// RedisConnection.blockingPipeline); `onWake` gets the wait's reply before
    /// the fetch's is decoded. The fetch's lease started no earlier than the
    /// send, so `lastSentAt` is the send: up to one wait early, which the
    /// caller keeps well below the lease. Returns nil when the fetch did not
    /// run (Redis did not know the script: NOSCRIPT) or when the replies were
    /// lost and the fetch was settled (what it claimed given back).
    func sendClaimingAfterWait(_ wait: [String], blockingMs: Int, _ fetch: FetchCall,
                               onWake: (RedisReply) -> Void) throws -> FetchCall.Output? {
        try redis.connect()
        let stamped = self.stamped(fetch)
        let sentAt = Clock.monotonicMillis()
        let call = ["EVALSHA", stamped.script.sha1, String(stamped.keys.count)] + stamped.keys + stamped.args
        let replies: (RedisReply, RedisReply)
        do {
            replies = try redis.blockingPipeline(wait, then: call, blockingMs: blockingMs)
        } catch let error as RedisError {
            if case .server = error { throw error }
            guard settle(stamped, sentAt: sentAt) != nil else { throw error }
            return nil
        }
        onWake(replies.0)
        if case .error(let e) = replies.1, e.hasPrefix("NOSCRIPT") { return nil }
        let output = try stamped.decode(replies.1)
        lastSentAt = sentAt
        return output
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

import Shared

/// On one Redis (not Cluster), the call that records a batch of successes
/// also gives back their runs' slots and takes those of the jobs it claims
/// (CallLimits): a limit that does not bind then costs no call of its own.
/// What the call left undone goes through LimitGate.settleBatch as on Cluster.
extension LimitGate {
    /// The limits the batch's call settles: those of the runs it records (at
    /// most CallLimits.maxLimits); nil on Cluster, where a limit has a slot
    /// of its own, or when no run held a slot.
    func callLimits(for releases: [LimitRelease?]) -> CallLimits? {
        guard worker.limitsInCallAllowed else { return nil }
        var names: [String] = []
        for case let r? in releases where !names.contains(r.limit) && names.count < CallLimits.maxLimits {
            names.append(r.limit)
        }
        guard !names.isEmpty else { return nil }
        let byType = worker.config.limitsByType.compactMap { type, limit in
            names.firstIndex(of: limit).map { (type: type, index: $0) }
        }
        return CallLimits(schema: worker.schema, names: names, byType: byType, groupCaps: worker.groupCapsDefined,
                          releases: releases.map { r in
                              r.flatMap { r in names.firstIndex(of: r.limit).map { (index: $0, extraUnits: r.extraUnits) } }
                          })
    }

    /// Applies what the call did: the slots it gave back, and per claimed job
    /// whether it may run or was parked. Returns the releases still to do
    /// (all of them when the reply was lost and the call settled: giving a
    /// slot back twice is harmless).
    func settledInCall(_ answers: inout [CompletionBatcher.Answer], releases: [LimitRelease?], limits: CallLimits,
                       outcome: CallLimits.Outcome?) -> [LimitRelease?] {
        guard let outcome else { return releases }
        var left = releases
        for (i, r) in limits.releases.enumerated() where r != nil {
            answers[i].released = true
            left[i] = nil
        }
        // Wakes first: a refusal in the same call then keeps its delay (ParkedLimits).
        for (limit, queues) in outcome.wakes { wake(queues, limit: limit) }
        // The claims went to the first answers, in order.
        for (i, admission) in outcome.admissions.enumerated() {
            switch admission {
            case .leftToWorker:
                continue
            case .granted(let limit, let cost):
                answers[i].nextAdmitted = true
                if case .damaged(let id, let attempt, _)? = answers[i].next {
                    // Its loop fails it without running it: its slot and cost come back now.
                    undo([limit], LimitHolder(id, attempt: attempt), cost: cost)
                }
            case .parked(let limit, let reason, let retryInMs):
                // Parked, even one the worker would find damaged: it is no
                // longer this worker's (it is failed when claimed again).
                guard let id = answers[i].next?.claimedID else { continue }
                answers[i].parked()
                noteParked(id, limit: limit, reason: reason, retryInMs: retryInMs)
            }
        }
        return left
    }
}

import Shared

/// What this worker process knows of the jobs parked behind limits in its
/// queues (ParkCall), and when each (queue, limit) is worth asking again:
/// - a refusal says when at the latest (the rate window or budget refills,
///   the pause ends, the oldest hold lapses);
/// - a release of the limit anywhere pushes a `limit:<name>` wake token to
///   the waiting queues, which marks them ready here (FetchLoop, the cluster
///   wake listener);
/// - the control loop reads each queue's set of parked limits every heartbeat,
///   so jobs parked by a worker that died are found too.
/// Shared by the fetch loops; one lock, held for map updates only.
final class ParkedLimits {
    struct Place: Hashable {
        let queue: String
        let limit: String
    }

    /// The wake token a release pushes to a waiting queue.
    static let tokenPrefix = "limit:"
    /// After a refusal for concurrency, early looks, 100 ms then doubling up
    /// to what the refusal said: a slot freed between the refusal and the
    /// park wakes nobody (its release found the queue waiting before the job
    /// was parked), and a wake token can be taken by a loop that then finds
    /// the list empty. Consecutive refusals back off, so a full limit is not
    /// polled.
    static let recheckAfterRefusalMs: Int64 = 100

    private let lock = Lock()
    /// Monotonic ms from which a place is worth asking again.
    private var notBefore: [Place: Int64] = [:]
    /// Concurrency refusals in a row per place (the early looks' backoff).
    private var refusalsInARow: [Place: Int] = [:]

    /// The limits of `queue` worth a try now.
    func ready(in queue: String) -> [String] {
        let now = Clock.monotonicMillis()
        return lock.locked { notBefore.compactMap { $0.key.queue == queue && $0.value <= now ? $0.key.limit : nil } }
    }

    /// The limit refused: ask again within `retryInMs` (sooner for concurrency, see above).
    func refused(_ place: Place, retryInMs: Int64, reason: String) {
        lock.locked {
            var wait = max(1, retryInMs)
            if reason == "concurrency" {
                let n = refusalsInARow[place, default: 0]
                refusalsInARow[place] = n + 1
                wait = min(wait, ParkedLimits.recheckAfterRefusalMs << min(n, 16))
            }
            notBefore[place] = Clock.monotonicMillis() + wait
        }
    }

    /// A slot of the limit freed (a wake token, a release here).
    func wake(_ place: Place) {
        lock.locked {
            notBefore[place] = Clock.monotonicMillis()
            refusalsInARow[place] = nil
        }
    }

    /// The parked list was found empty.
    func drained(_ place: Place) {
        lock.locked {
            notBefore[place] = nil
            refusalsInARow[place] = nil
        }
    }

    /// The queue's parked limits as Redis lists them: new ones are worth a
    /// try now, gone ones are forgotten.
    func found(_ limits: [String], in queue: String) {
        lock.locked {
            for limit in limits where notBefore[Place(queue: queue, limit: limit)] == nil {
                notBefore[Place(queue: queue, limit: limit)] = Clock.monotonicMillis()
            }
            let listed = Set(limits)
            for place in notBefore.keys where place.queue == queue && !listed.contains(place.limit) {
                notBefore[place] = nil
                refusalsInARow[place] = nil
            }
        }
    }

    /// Milliseconds until some place is worth a try (0: now), nil when none is known.
    func nextReadyInMs() -> Int64? {
        let now = Clock.monotonicMillis()
        return lock.locked { notBefore.values.min().map { max(0, $0 - now) } }
    }

    /// A wake token's value: the limit it names, if it is a release's.
    static func limit(inToken value: String?) -> String? {
        guard let value, value.hasPrefix(tokenPrefix) else { return nil }
        return String(value.dropFirst(tokenPrefix.count))
    }
}

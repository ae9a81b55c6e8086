import Shared

/// How idle fetch loops hear new jobs on Redis Cluster.
///
/// On one Redis a loop blocks in one `BLPOP` on all its queues' wake lists.
/// On Cluster that command is refused: each queue's keys live in the queue's
/// own slot, and a command's keys must share one. So here one listener per
/// queue (`ClusterWakeListener`, a thread with its own connection to the
/// queue's node) blocks on that queue's wake list, while at least one loop
/// of the process is idle, and hands each token to an idle loop through this
/// board. Idle workers stay asleep in Redis; a new job wakes a loop within a
/// thread hand-off of the token's arrival.
///
/// A token that arrives when no loop here is idle any more (they all found
/// work meanwhile) is pushed back, so that another worker's idle loop gets it.
final class ClusterWakeBoard {
    private let lock = Lock()
    private let changed = Condition()
    /// Loops waiting for work.
    private var idle = 0
    /// Tokens handed to idle loops and not taken yet.
    private var handed = 0

    /// A loop with nothing to do waits up to `ms` for a token.
    func waitForToken(ms: Int64, stop: StopFlag) {
        let until = Clock.monotonicMillis() + ms
        lock.locked {
            idle += 1
            changed.broadcast()
            while handed == 0 && !stop.isSet {
                let left = until - Clock.monotonicMillis()
                if left <= 0 { break }
                // Bounded so that shutdown is seen within 100 ms.
                lock.wait(changed, timeoutMs: min(left, 100))
            }
            if handed > 0 { handed -= 1 }
            idle -= 1
        }
    }

    /// A listener waits (up to `ms`) until a loop is idle with no token on its way.
    func waitForIdleLoop(ms: Int64) -> Bool {
        lock.locked {
            if idle > handed { return true }
            lock.wait(changed, timeoutMs: ms)
            return idle > handed
        }
    }

    /// Hands a token to an idle loop; false when none is idle (give it back).
    func hand() -> Bool {
        lock.locked {
            guard idle > handed else { return false }
            handed += 1
            changed.broadcast()
            return true
        }
    }
}

/// Blocks on one queue's wake list for the process' idle loops (see
/// ClusterWakeBoard). Runs on its own thread until shutdown.
final class ClusterWakeListener {
    private let worker: WorkerContext
    private let board: ClusterWakeBoard
    private let wakeKey: String
    private let queue: String

    init(worker: WorkerContext, board: ClusterWakeBoard, queue: String) {
        self.worker = worker
        self.board = board
        wakeKey = worker.schema.wake(queue)
        self.queue = queue
    }

    func run() {
        let redis = worker.newConnection()
        var failures = 0
        while !worker.stopFetching.isSet {
            guard board.waitForIdleLoop(ms: 100) else { continue }
            do {
                let reply = try redis.blockingCommand(["BLPOP", wakeKey, "1"], blockingMs: 1000)
                if case .error(let e) = reply { throw RedisError.server(e) }
                if case .array(let parts) = reply {
                    // A release's token names its limit: this queue's parked jobs may run.
                    if parts.count == 2, let limit = ParkedLimits.limit(inToken: parts[1].string) {
                        worker.parked.wake(ParkedLimits.Place(queue: queue, limit: limit))
                    }
                    if !board.hand() { _ = try redis.command(["LPUSH", wakeKey, parts.count == 2 ? parts[1].string ?? "1" : "1"]) }
                }
                failures = 0
            } catch {
                // The fetch loops report Redis trouble; this one only waits.
                failures += 1
                _ = worker.stopFetching.sleep(ms: Backoff.reconnectDelay(failures: failures))
            }
        }
        redis.disconnect()
    }
}

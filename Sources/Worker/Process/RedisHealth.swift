import Logging
import Shared

/// Logs a Redis outage once per process (not once per thread and retry), and
/// its end once; a change of cause during an outage (the network came back but
/// the password is wrong, the node turned replica) is logged too.
final class RedisHealth {
    private let lock = Lock()
    private var down = false
    private var downKind = ""
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func failed(_ error: Error) {
        let kind = RedisProblem.kind(of: error)
        let news = lock.locked { () -> Bool in
            defer { down = true; downKind = kind }
            return !down || downKind != kind
        }
        WorkerMetrics.redisError(kind: kind)
        if news {
            logger.error("redis unavailable; retrying with backoff", metadata: ["error": "\(error)", "kind": "\(kind)"])
        }
    }

    func succeeded() {
        let wasDown = lock.locked { () -> Bool in
            defer { down = false }
            return down
        }
        if wasDown {
            WorkerMetrics.redisReconnected()
            logger.notice("redis reachable again; resuming")
        }
    }

    var isDown: Bool { lock.locked { down } }

    /// Runs `call` until it succeeds, through an outage (logged as above),
    /// with capped backoff between tries. Past `giveUpAt` (monotonic ms) it
    /// stops: `gaveUp` gets the last error, and the answer is nil.
    func retrying<Output>(until giveUpAt: Int64, _ call: () throws -> Output, gaveUp: (Error) -> Void) -> Output? {
        var failures = 0
        while true {
            do {
                let output = try call()
                succeeded()
                return output
            } catch {
                failures += 1
                failed(error)
                if Clock.monotonicMillis() > giveUpAt {
                    gaveUp(error)
                    return nil
                }
                Clock.sleep(milliseconds: Backoff.reconnectDelay(failures: failures))
            }
        }
    }
}

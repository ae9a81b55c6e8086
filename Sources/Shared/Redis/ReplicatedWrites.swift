/// A write that the primary stored but that fewer replicas than required
/// acknowledged within the wait: a failover now could lose it. The client is
/// told which jobs, so that a retry with the same idempotency key finds them.
public struct NotReplicated: Error, CustomStringConvertible {
    public let acknowledged: Int64
    public let required: Int
    public let waitedMs: Int
    /// The jobs the write created or changed (filled in by whoever knows them).
    public var jobIDs: [String] = []

    public init(acknowledged: Int64, required: Int, waitedMs: Int, jobIDs: [String] = []) {
        self.acknowledged = acknowledged
        self.required = required
        self.waitedMs = waitedMs
        self.jobIDs = jobIDs
    }

    /// The same, naming the jobs the write touched.
    public func naming(_ ids: [String]) -> NotReplicated {
        var copy = self
        copy.jobIDs = ids
        return copy
    }

    public var description: String {
        "\(acknowledged) of the \(required) replicas required acknowledged the write within \(waitedMs) ms"
    }
}

/// Waits for replicas on behalf of the writes of one connection, with one
/// `WAIT` in flight at a time: a `WAIT` returns once that many replicas hold
/// every write the connection made before it, so it settles every write
/// whose reply had arrived when it was sent; writes answered meanwhile get the
/// next one. Why one at a time: Redis runs nothing else of a connection while
/// it is blocked in `WAIT`, so a `WAIT` per write would queue them behind each
/// other (a stopped replica would cost the timeout once per write, and the
/// writes behind them would miss the Redis timeout).
///
/// Lives on its connection's event-loop thread, like the connection.
public final class ReplicaAcknowledger {
    public let replicas: Int
    public let timeoutMs: Int
    /// The connection whose writes it waits for: writes must be sent on it.
    public let connection: AsyncRedisConnection
    private var waiting: [(NotReplicated?) -> Void] = []
    private var inFlight = false

    public init(redis: AsyncRedisConnection, replicas: Int, timeoutMs: Int) {
        connection = redis
        self.replicas = replicas
        self.timeoutMs = timeoutMs
    }

    /// Runs `call` on the connection; when it succeeded, waits for the
    /// replicas. The callback gets the call's result, and `NotReplicated`
    /// when too few replicas acknowledged.
    public func run<C: ScriptCall>(_ call: C, _ callback: @escaping (Result<C.Output, Error>, NotReplicated?) -> Void) {
        connection.run(call) { [self] result in
            guard case .success = result else { return callback(result, nil) }
            afterWrites { callback(result, $0) }
        }
    }

    /// Calls `done` once enough replicas hold the writes already answered on
    /// the connection (nil), or with what fell short.
    public func afterWrites(_ done: @escaping (NotReplicated?) -> Void) {
        guard replicas > 0 else { return done(nil) }
        waiting.append(done)
        if !inFlight { sendWait() }
    }

    private func sendWait() {
        let settled = waiting
        waiting = []
        inFlight = true
        connection.send(["WAIT", String(replicas), String(timeoutMs)]) { [self] reply in
            inFlight = false
            let outcome: NotReplicated?
            if case .success(.integer(let n)) = reply, n >= replicas {
                outcome = nil
            } else if case .success(.integer(let n)) = reply {
                outcome = NotReplicated(acknowledged: n, required: replicas, waitedMs: timeoutMs)
            } else {
                // An error or a lost connection: the writes happened, whether
                // they reached a replica is unknown.
                outcome = NotReplicated(acknowledged: 0, required: replicas, waitedMs: timeoutMs)
            }
            for done in settled { done(outcome) }
            if !waiting.isEmpty { sendWait() }
        }
    }
}


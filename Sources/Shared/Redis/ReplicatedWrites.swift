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

extension AsyncRedisConnection {
    /// Runs `call`; when `replicas` > 0 and it succeeded, sends `WAIT replicas
    /// timeoutMs` on the same connection, which returns once that many
    /// replicas hold every write this connection made so far (or the time is
    /// up). The callback gets the call's result, and `NotReplicated` when too
    /// few acknowledged. One WAIT covers every call before it on this
    /// connection, so a combined enqueue call costs one WAIT.
    public func runAcknowledged<C: ScriptCall>(_ call: C, replicas: Int, timeoutMs: Int,
                                               _ callback: @escaping (Result<C.Output, Error>, NotReplicated?) -> Void) {
        run(call) { [self] result in
            guard replicas > 0, case .success = result else { return callback(result, nil) }
            send(["WAIT", String(replicas), String(timeoutMs)]) { reply in
                switch reply {
                case .success(.integer(let n)):
                    callback(result, n >= replicas ? nil : NotReplicated(acknowledged: n, required: replicas, waitedMs: timeoutMs))
                case .success(let other):
                    callback(.failure(RedisError.server("unexpected reply to WAIT: \(other)")), nil)
                case .failure:
                    // The write happened; whether it reached a replica is unknown.
                    callback(result, NotReplicated(acknowledged: 0, required: replicas, waitedMs: timeoutMs))
                }
            }
        }
    }
}

import Shared

/// Group commit (GroupCommit) for one limit's acquires and releases, as
/// CompletionBatcher is for a queue's successes: the operations a worker's
/// loops ask for while another call on the same limit is on its way to Redis
/// go together in the next one (LimitBatchCall). (A batch of successes does
/// its limits' work in its own call: LimitGate.settleBatch.)
final class LimitBatcher {
    /// Most operations in one call: keeps one script run short.
    static let maxBatch = 64
    private let commit = GroupCommit<LimitBatchCall.Operation, AcquireLimitCall.Outcome?>(
        maxWeight: LimitBatcher.maxBatch, maxInFlight: 2)

    /// Sends a batch (on the leading loop's connection): one outcome per
    /// operation, in order (nil for a release or an undo).
    typealias Send = ([LimitBatchCall.Operation]) throws -> [AcquireLimitCall.Outcome?]

    /// Runs one operation, with others when they come together; the acquire's
    /// outcome (nil for a release or an undo). Throws when the call carrying it failed.
    func run(_ operation: LimitBatchCall.Operation, send: Send) throws -> AcquireLimitCall.Outcome? {
        try commit.submit(operation, send: send)
    }
}

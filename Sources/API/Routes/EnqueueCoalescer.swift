import Shared

/// Combines concurrent enqueue requests into one script call per queue
/// (group commit).
///
/// Why: each script call costs Redis a fixed ~10-15 µs (argument tables,
/// reply) beyond the work per job. At most `maxInFlight` calls per loop are
/// out at once; requests that arrive meanwhile wait, and go out together as
/// soon as a call returns. At low load nothing waits (a lone request is sent at
/// once); under load the batches grow with the load, and Redis' cost per job
/// falls toward that of a batch enqueue. Each request still gets its own
/// entries, in order.
///
/// Only for queues without a pending limit, and requests without an
/// idempotency key: a limit or a key conflict refuses a call whole, and each
/// request must stay all-or-none on its own, so those calls go out as they come.
final class EnqueueCoalescer {
    struct UnexpectedConflict: Error, CustomStringConvertible {
        var description: String { "idempotency conflict in a combined enqueue call" }
    }

    typealias Completion = (Result<EnqueueCall.Outcome, Error>) -> Void

    private struct Request {
        let items: [EnqueueCall.Item]
        let completion: Completion
    }

    /// Jobs and payload bytes of one combined call at most; more are split
    /// over several calls (a huge call could pass Redis' query buffer limit
    /// or the command timeout, failing requests that did nothing wrong).
    static let maxJobsPerCall = 1000
    static let maxBytesPerCall = 4 << 20
    /// Calls out at once per loop: two keep Redis busy while a reply travels.
    static let maxInFlight = 2

    private let schema: KeySchema
    private var waiting: [String: [Request]] = [:]
    private var order: [String] = []
    private var inFlight = 0
    /// Key names by queue, built once per queue rather than per call; cleared
    /// past `maxCachedQueues` (queues are bounded by SPOOL_MAX_QUEUES anyway).
    private var queueKeys: [String: QueueKeys] = [:]
    static let maxCachedQueues = 4096

    /// Waits for the replicas that must hold the jobs before they are
    /// answered (SPOOL_MIN_REPLICAS); the calls go out on its connection.
    private let acknowledger: ReplicaAcknowledger

    init(schema: KeySchema, acknowledger: ReplicaAcknowledger) {
        self.schema = schema
        self.acknowledger = acknowledger
    }

    /// Runs an enqueue call, waiting for the replicas when asked: a call that
    /// stored jobs that too few replicas hold fails with NotReplicated naming them.
    private func run(_ call: EnqueueCall, _ completion: @escaping Completion) {
        acknowledger.run(call) { result, notReplicated in
            if let missing = notReplicated, case .success(.enqueued(let entries)) = result {
                return completion(.failure(missing.naming(entries.map(\.job.id.text))))
            }
            completion(result)
        }
    }

    /// `clientLimit`: the max_pending of the client enqueuing (0: none). A
    /// request with any limit or idempotency key is a call of its own.
    func submit(queue: String, items: [EnqueueCall.Item], pendingLimit: Int64, clientLimit: Int64 = 0,
                _ completion: @escaping Completion) {
        guard pendingLimit == 0, clientLimit == 0, !items.contains(where: { $0.job.idempotencyKey != nil }) else {
            return run(EnqueueCall(queue: keys(queue), items: items, pendingLimit: pendingLimit, clientLimit: clientLimit),
                       completion)
        }
        if waiting[queue] == nil { order.append(queue) }
        waiting[queue, default: []].append(Request(items: items, completion: completion))
        if inFlight < EnqueueCoalescer.maxInFlight { flush() }
    }

    private func flush() {
        let queues = order
        let batches = waiting
        order = []
        waiting = [:]
        for queue in queues {
            var group: [Request] = []
            var jobs = 0
            var bytes = 0
            for request in batches[queue] ?? [] {
                let size = request.items.reduce(0) { $0 + $1.job.payload.utf8.count }
                if !group.isEmpty && (jobs + request.items.count > EnqueueCoalescer.maxJobsPerCall
                                      || bytes + size > EnqueueCoalescer.maxBytesPerCall) {
                    send(queue, group)
                    group = []
                    jobs = 0
                    bytes = 0
                }
                group.append(request)
                jobs += request.items.count
                bytes += size
            }
            if !group.isEmpty { send(queue, group) }
        }
    }

    private func keys(_ queue: String) -> QueueKeys {
        if let k = queueKeys[queue] { return k }
        if queueKeys.count >= EnqueueCoalescer.maxCachedQueues { queueKeys.removeAll() }
        let k = schema.queueKeys(queue)
        queueKeys[queue] = k
        return k
    }

    /// One script call for `group`; its entries are handed back per request, in order.
    private func send(_ queue: String, _ group: [Request]) {
        let call = EnqueueCall(queue: keys(queue), items: group.flatMap(\.items), pendingLimit: 0)
        inFlight += 1
        run(call) { [self] result in
            inFlight -= 1
            defer { if inFlight < EnqueueCoalescer.maxInFlight && !order.isEmpty { flush() } }
            switch result {
            case .failure(let missing as NotReplicated):
                // Each request is told about its own jobs.
                var offset = 0
                let ids = missing.jobIDs
                for r in group {
                    r.completion(.failure(missing.naming(Array(ids[offset..<min(ids.count, offset + r.items.count)]))))
                    offset += r.items.count
                }
            case .failure(let error):
                for r in group { r.completion(.failure(error)) }
            case .success(.queueFull(let pending)):
                for r in group { r.completion(.success(.queueFull(pending: pending))) }
            case .success(.idempotencyConflict), .success(.clientFull):
                // Cannot happen: requests with a key or a client limit are not combined.
                for r in group { r.completion(.failure(UnexpectedConflict())) }
            case .success(.enqueued(let entries)):
                var offset = 0
                for r in group {
                    let mine = Array(entries[offset..<(offset + r.items.count)])
                    offset += r.items.count
                    r.completion(.success(.enqueued(mine)))
                }
            }
        }
    }
}

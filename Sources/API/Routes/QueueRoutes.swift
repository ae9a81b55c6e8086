import Shared

extension Router {
    /// `GET /v1/queues`: every known queue with its counts, sorted by name.
    func listQueues(_ responder: Responder) {
        redis.send(["SMEMBERS", schema.queues]) { [self] result in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(let reply):
                let names = (reply.array ?? []).compactMap(\.string).filter(Validation.isValidQueueName).sorted()
                gatherStats(names) { result in
                    switch result {
                    case .failure(let e): responder.send(self.failure(e))
                    case .success(let stats):
                        responder.send(.json(200) { w in
                            w.beginObject()
                            w.key("queues")
                            w.beginArray()
                            for s in stats { s.writeJSON(to: &w) }
                            w.endArray()
                            w.endObject()
                        })
                    }
                }
            }
        }
    }

    /// Reads the stats of each queue (pipelined) and calls back once, in order.
    func gatherStats(_ names: [String], _ done: @escaping (Result<[QueueStatsCall.Stats], Error>) -> Void) {
        if names.isEmpty { return done(.success([])) }
        var results = [QueueStatsCall.Stats?](repeating: nil, count: names.count)
        var remaining = names.count
        var failed = false
        for (i, name) in names.enumerated() {
            redis.run(QueueStatsCall(schema: schema, queue: name)) { result in
                guard !failed else { return }
                switch result {
                case .failure(let e):
                    failed = true
                    done(.failure(e))
                case .success(let stats):
                    results[i] = stats
                    remaining -= 1
                    if remaining == 0 { done(.success(results.map { $0! })) }
                }
            }
        }
    }
}

import Shared

extension Router {
    /// Queues per page of `GET /v1/queues` unless `limit` says otherwise, and at most.
    static let defaultQueuePage = 100
    static let maxQueuePage = 1000

    /// `GET /v1/queues?limit=&cursor=&prefix=`: known queues with their counts,
    /// sorted by name, a page at a time; `next_cursor` (the last name of this
    /// page) continues, null on the last page.
    func listQueues(_ request: HTTPRequest, _ responder: Responder) {
        var limit = Router.defaultQueuePage
        if let text = request.query["limit"] {
            guard let n = Int(text), (1...Router.maxQueuePage).contains(n) else {
                return responder.send(.error(400, "invalid_field", "limit: must be a whole number from 1 to \(Router.maxQueuePage)"))
            }
            limit = n
        }
        let cursor = request.query["cursor"] ?? ""
        guard cursor.isEmpty || Validation.isValidQueueName(cursor) else {
            return responder.send(.error(400, "invalid_field", "cursor: not a cursor this API returned"))
        }
        let prefix = request.query["prefix"] ?? ""
        guard prefix.isEmpty || Validation.isValidQueueName(prefix) else {
            return responder.send(.error(400, "invalid_field", "prefix: must match [A-Za-z0-9_.-]{1,64}"))
        }
        queueNames { [self] result in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(let all):
                let matching = all.filter { $0.hasPrefix(prefix) && (cursor.isEmpty || $0 > cursor) }
                let page = Array(matching.prefix(limit))
                let next = matching.count > limit ? page.last : nil
                gatherStats(page) { result in
                    switch result {
                    case .failure(let e): responder.send(self.failure(e))
                    case .success(let stats):
                        responder.send(.json(200) { w in
                            w.beginObject()
                            w.key("queues")
                            w.beginArray()
                            for s in stats { s.writeJSON(to: &w) }
                            w.endArray()
                            w.field("next_cursor", next)
                            w.endObject()
                        })
                    }
                }
            }
        }
    }

    /// Every known queue name, sorted.
    func queueNames(_ done: @escaping (Result<[String], Error>) -> Void) {
        redis.send(["SMEMBERS", schema.queues]) { result in
            done(result.map { reply in
                (reply.array ?? []).compactMap(\.string).filter(Validation.isValidQueueName).sorted()
            }.mapError { $0 as Error })
        }
    }

    /// Stats read per call at most: the replies of one chunk are handled in one
    /// pass of the loop, so a chunk bounds how long a listing or a scrape of
    /// many queues holds the loop (other requests are served between chunks).
    static let statsChunk = 250

    /// Reads the stats of each queue (pipelined, a chunk at a time) and calls back once, in order.
    func gatherStats(_ names: [String], _ done: @escaping (Result<[QueueStatsCall.Stats], Error>) -> Void) {
        var results: [QueueStatsCall.Stats] = []
        results.reserveCapacity(names.count)
        func chunk(from start: Int) {
            if start >= names.count { return done(.success(results)) }
            let part = names[start..<min(names.count, start + Router.statsChunk)]
            var replies = [QueueStatsCall.Stats?](repeating: nil, count: part.count)
            var remaining = part.count
            var failed = false
            for (i, name) in part.enumerated() {
                redis.run(QueueStatsCall(schema: schema, queue: name)) { result in
                    guard !failed else { return }
                    switch result {
                    case .failure(let e):
                        failed = true
                        done(.failure(e))
                    case .success(let stats):
                        replies[i] = stats
                        remaining -= 1
                        if remaining == 0 {
                            results += replies.map { $0! }
                            chunk(from: start + part.count)
                        }
                    }
                }
            }
        }
        chunk(from: 0)
    }
}

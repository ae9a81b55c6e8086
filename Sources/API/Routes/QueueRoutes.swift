import Shared

extension Router {
    /// Queues per page of `GET /v1/queues` unless `limit` says otherwise, and at most.
    static let defaultQueuePage = 100
    static let maxQueuePage = 1000

    /// `GET /v1/queues?limit=&cursor=&prefix=`: known queues with their counts,
    /// sorted by name, a page at a time; `next_cursor` (the last name of this
    /// page) continues, null on the last page. A client sees only the queues
    /// its entry in the auth file names.
    func listQueues(_ request: HTTPRequest, _ responder: Responder, _ caller: Caller) {
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
        queueNames(sorted: true) { [self] result in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(let all):
                let matching = all.filter { $0.hasPrefix(prefix) && (cursor.isEmpty || $0 > cursor) && caller.mayUse(queue: $0) }
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

    /// Every known queue name (sorted when asked: a listing pages by name).
    func queueNames(sorted: Bool, _ done: @escaping (Result<[String], Error>) -> Void) {
        redis.send(["SMEMBERS", schema.queues]) { result in
            done(result.map { reply in
                let names = (reply.array ?? []).compactMap(\.string).filter(Validation.isValidQueueName)
                return sorted ? names.sorted() : names
            }.mapError { $0 as Error })
        }
    }

    /// The stats of each queue, in order (see `fanOut`).
    func gatherStats(_ names: [String], _ done: @escaping (Result<[QueueStatsCall.Stats], Error>) -> Void) {
        fanOut(names, { [self] name, reply in redis.run(QueueStatsCall(schema: schema, queue: name), reply) }, done: done)
    }
}

import Shared

extension Router {
    static let defaultGroupPage = 100
    static let maxGroupPage = 1000

    /// `GET /v1/queues/{queue}/groups?limit=&cursor=`: the queue's groups
    /// with jobs waiting, and how many each has, a page at a time (Redis'
    /// HSCAN: a page may hold a few more or fewer than `limit`; `next_cursor`
    /// is null once every group was listed).
    func listGroups(_ segment: Substring, _ request: HTTPRequest, _ responder: Responder) {
        guard let queue = queueName(segment, responder) else { return }
        var pageSize = Router.defaultGroupPage
        if let text = request.query["limit"] {
            guard let n = Int(text), (1...Router.maxGroupPage).contains(n) else {
                return responder.send(.error(400, "invalid_field", "limit: must be a whole number from 1 to \(Router.maxGroupPage)"))
            }
            pageSize = n
        }
        let cursor = request.query["cursor"] ?? "0"
        guard let start = UInt64(cursor) else {
            return responder.send(.error(400, "invalid_field", "cursor: not a cursor this API returned"))
        }
        requireQueue(queue, responder) { [self] in
            redis.send(["HSCAN", schema.groups(queue), String(start), "COUNT", String(pageSize)]) { [self] result in
                switch result {
                case .failure(let e): responder.send(failure(e))
                case .success(let reply):
                    guard let parts = reply.array, parts.count == 2, let next = parts[0].string,
                          let flat = parts[1].array else {
                        return responder.send(.error(502, "redis_error", "unexpected HSCAN reply"))
                    }
                    responder.send(.json(200) { w in
                        w.beginObject()
                        w.key("groups")
                        w.beginArray()
                        var i = 0
                        while i + 1 < flat.count {
                            w.beginObject()
                            w.field("group", flat[i].string)
                            w.field("pending", flat[i + 1].int ?? 0)
                            w.endObject()
                            i += 2
                        }
                        w.endArray()
                        w.field("next_cursor", next == "0" ? nil : next)
                        w.endObject()
                    })
                }
            }
        }
    }
}

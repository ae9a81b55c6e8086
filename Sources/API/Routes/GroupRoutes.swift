import Shared

extension Router {
    static let defaultGroupPage = 100
    static let maxGroupPage = 1000

    /// `GET /v1/queues/{queue}/groups?limit=&cursor=`: the queue's groups
    /// with jobs waiting, and how many each has, a page at a time
    /// (ListGroupsCall: a page may hold a few more or fewer than `limit`;
    /// `next_cursor` is null once every group was listed).
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
            redis.run(ListGroupsCall(schema: schema, queue: queue, cursor: start, count: pageSize)) { [self] result in
                switch result {
                case .failure(let e): responder.send(failure(e))
                case .success(let page):
                    responder.send(.json(200) { w in
                        w.beginObject()
                        w.key("groups")
                        w.beginArray()
                        for group in page.groups {
                            w.beginObject()
                            w.field("group", group.name)
                            w.field("pending", group.waiting)
                            w.endObject()
                        }
                        w.endArray()
                        w.field("next_cursor", page.nextCursor)
                        w.endObject()
                    })
                }
            }
        }
    }
}

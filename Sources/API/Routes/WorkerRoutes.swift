import Shared

extension Router {
    /// `GET /v1/workers`: live workers. A worker's entry expires a few
    /// heartbeats after its last, so a dead worker drops out by itself.
    func listWorkers(_ responder: Responder) {
        redis.send(["ZREVRANGE", schema.workers, "0", "999"]) { [self] result in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(let reply):
                let ids = (reply.array ?? []).compactMap(\.string)
                gatherHashes(ids.map { schema.worker($0) }) { [self] result in
                    switch result {
                    case .failure(let e): responder.send(failure(e))
                    case .success(let hashes):
                        responder.send(.json(200) { w in
                            w.beginObject()
                            w.key("workers")
                            w.beginArray()
                            for h in hashes where !h.isEmpty { Router.writeWorker(h, to: &w) }
                            w.endArray()
                            w.endObject()
                        })
                    }
                }
            }
        }
    }

    private static func writeWorker(_ h: [String: String], to w: inout JSONWriter) {
        w.beginObject()
        w.field("id", h["id"])
        w.field("host", h["host"])
        w.field("pid", Int64(h["pid"] ?? ""))
        w.key("queues")
        w.beginArray()
        for q in (h["queues"] ?? "").split(separator: ",") { w.raw(JSONWriter.quoted(String(q))) }
        w.endArray()
        w.field("concurrency", Int64(h["concurrency"] ?? ""))
        w.field("started_at", Int64(h["started_at"] ?? "").map { Timestamp.format(millis: $0) })
        w.field("last_heartbeat", Int64(h["last_heartbeat"] ?? "").map { Timestamp.format(millis: $0) })
        w.field("processed", Int64(h["processed"] ?? "") ?? 0)
        w.field("failed", Int64(h["failed"] ?? "") ?? 0)
        let jobs = h["jobs"].flatMap { try? JSONParser.parse($0) } ?? .array([])
        w.field("jobs", jobs)
        w.endObject()
    }

    /// HGETALL of each key, in order (see `fanOut`).
    func gatherHashes(_ keys: [String], _ done: @escaping (Result<[[String: String]], Error>) -> Void) {
        fanOut(keys, { [self] key, reply in
            redis.send(["HGETALL", key]) { result in reply(result.map(\.hash).mapError { $0 as Error }) }
        }, done: done)
    }
}

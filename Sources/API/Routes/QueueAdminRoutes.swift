import Shared
import Synchronization

extension Router {
    /// Parses a queue name from the path; answers 400 itself when it is not one.
    func queueName(_ segment: Substring, _ responder: Responder) -> String? {
        guard let q = HTTPHeadParser.percentDecode(segment), Validation.isValidQueueName(q) else {
            responder.send(.error(400, "invalid_field", "queue: '\(segment.prefix(80))' must match [A-Za-z0-9_.-]{1,64}"))
            return nil
        }
        return q
    }

    /// Calls `then` when the queue is known (has seen a job or was paused), else answers 404.
    func requireQueue(_ queue: String, _ responder: Responder, _ then: @escaping () -> Void) {
        redis.send(["SISMEMBER", schema.queues, queue]) { [self] result in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(let r) where r.int == 1: then()
            case .success: responder.send(.error(404, "not_found", "no queue '\(queue)'"))
            }
        }
    }

    /// `GET /v1/queues/{queue}`: the listing entry plus processed and failed per minute.
    func queueDetail(_ segment: Substring, _ responder: Responder) {
        guard let queue = queueName(segment, responder) else { return }
        requireQueue(queue, responder) { [self] in
            redis.run(QueueStatsCall(schema: schema, queue: queue)) { [self] stats in
                redis.run(ThroughputCall(schema: schema, queue: queue)) { [self] minutes in
                    switch (stats, minutes) {
                    case (.failure(let e), _), (_, .failure(let e)):
                        responder.send(failure(e))
                    case (.success(let s), .success(let m)):
                        responder.send(.json(200) { w in
                            s.writeJSON(to: &w) { w in
                                w.key("throughput")
                                w.beginArray()
                                for minute in m {
                                    w.beginObject()
                                    w.field("minute", Timestamp.format(millis: minute.startMillis))
                                    w.field("processed", minute.processed)
                                    w.field("failed", minute.failed)
                                    w.endObject()
                                }
                                w.endArray()
                            }
                        })
                    }
                }
            }
        }
    }

    /// `POST /v1/queues/{queue}/pause` and `/resume`: 404 for a queue that
    /// never had a job (a typo must not create a queue).
    func setPaused(_ segment: Substring, paused: Bool, _ responder: Responder) {
        guard let queue = queueName(segment, responder) else { return }
        requireQueue(queue, responder) { [self] in setPaused(queue, paused: paused, responder) }
    }

    private func setPaused(_ queue: String, paused: Bool, _ responder: Responder) {
        let command = paused ? ["SET", schema.paused(queue), "1"] : ["DEL", schema.paused(queue)]
        redis.send(command) { [self] result in
            if case .failure(let e) = result { return responder.send(failure(e)) }
            // Idle workers recheck at once rather than at their next timeout.
            if !paused { redis.send(["LPUSH", schema.wake(queue)] + Array(repeating: "1", count: 16)) { _ in } }
            logger.info(paused ? "queue paused" : "queue resumed", metadata: ["queue": "\(queue)"])
            redis.run(QueueStatsCall(schema: schema, queue: queue)) { [self] stats in
                switch stats {
                case .failure(let e): responder.send(failure(e))
                case .success(let s): responder.send(.json(200) { s.writeJSON(to: &$0) })
                }
            }
        }
    }

    /// `GET /v1/queues/{queue}/dead?limit=&cursor=`: dead jobs, newest first.
    /// A client without `admin` sees only its own: a page then may hold fewer
    /// than `limit` jobs (even none) while `next_cursor` says there is more.
    func listDead(_ segment: Substring, _ request: HTTPRequest, _ responder: Responder, _ caller: Caller) {
        guard let queue = queueName(segment, responder) else { return }
        var limit = 50
        if let text = request.query["limit"] {
            guard let n = Int(text), (1...1000).contains(n) else {
                return responder.send(.error(400, "invalid_field", "limit: must be a whole number from 1 to 1000"))
            }
            limit = n
        }
        var cursor = DeadListCall.Cursor.start
        if let text = request.query["cursor"], !text.isEmpty {
            guard let c = DeadListCall.Cursor(parsing: text) else {
                return responder.send(.error(400, "invalid_field", "cursor: not a cursor this API returned"))
            }
            cursor = c
        }
        redis.run(DeadListCall(schema: schema, queue: queue, cursor: cursor, limit: limit)) { [self] result in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(let page):
                responder.send(.json(200) { w in
                    w.beginObject()
                    w.key("jobs")
                    w.beginArray()
                    for job in page.jobs where caller.sees(job) { job.writeJSON(to: &w) }
                    w.endArray()
                    w.field("next_cursor", page.next?.text)
                    w.endObject()
                })
            }
        }
    }

    /// `POST /v1/queues/{queue}/dead/retry`: every dead job back to queued.
    func retryAllDead(_ segment: Substring, _ responder: Responder) {
        guard let queue = queueName(segment, responder) else { return }
        repeatInBatches({ [self] done in
            acknowledger.run(RetryDeadCall(schema: schema, queue: queue, limit: Router.deadBatch)) { result, notReplicated in
                if let notReplicated, case .success(let o) = result, o.retried > 0 { return done(.failure(notReplicated)) }
                done(result.map { (examined: $0.examined, counted: $0.retried) })
            }
        }, responder: responder) { total in
            self.logger.info("dead jobs retried", metadata: ["queue": "\(queue)", "count": .stringConvertible(total)])
            responder.send(.json(200) { w in w.beginObject(); w.field("retried", total); w.endObject() })
        }
    }

    /// `DELETE /v1/queues/{queue}/dead`: deletes every dead job.
    func purgeDead(_ segment: Substring, _ responder: Responder) {
        guard let queue = queueName(segment, responder) else { return }
        repeatInBatches({ [self] done in
            redis.run(PurgeDeadCall(schema: schema, queue: queue, limit: Router.deadBatch)) {
                done($0.map { (examined: $0, counted: $0) })
            }
        }, responder: responder) { total in
            self.logger.info("dead jobs purged", metadata: ["queue": "\(queue)", "count": .stringConvertible(total)])
            responder.send(.json(200) { w in w.beginObject(); w.field("deleted", total); w.endObject() })
        }
    }

    /// `DELETE /v1/queues/{queue}[?purge=true]`: removes a queue from the
    /// listing with its keys. A queue that still holds jobs (pending,
    /// scheduled, running or dead) answers 409 unless `purge=true`, which
    /// deletes those jobs first, a batch per script call.
    func deleteQueue(_ segment: Substring, _ request: HTTPRequest, _ responder: Responder) {
        guard let queue = queueName(segment, responder) else { return }
        var purge = false
        if let text = request.query["purge"] {
            guard text == "true" || text == "false" else {
                return responder.send(.error(400, "invalid_field", "purge: must be true or false"))
            }
            purge = text == "true"
        }
        requireQueue(queue, responder) { [self] in
            deleteQueueSteps(queue, purge: purge, purged: 0, responder)
        }
    }

    private func deleteQueueSteps(_ queue: String, purge: Bool, purged: Int, _ responder: Responder) {
        redis.run(DeleteQueueCall(schema: schema, queue: queue, purgeBatch: purge ? Router.deadBatch : 0)) { [self] result in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(.purged(let n)):
                deleteQueueSteps(queue, purge: purge, purged: purged + n, responder)
            case .success(.notEmpty(let pending, let scheduled, let running, let dead)):
                responder.send(.error(409, "queue_not_empty",
                                      "queue \(queue) still holds \(pending) pending, \(scheduled) scheduled, \(running) running and \(dead) dead jobs; "
                                      + "pass ?purge=true to delete them with the queue"))
            case .success(.deleted):
                redis.send(["SREM", schema.queues, queue]) { [self] result in
                    if case .failure(let e) = result { return responder.send(failure(e)) }
                    // Every loop of this process forgets its registrations (see registeredRecently).
                    Router.queueDeletions.add(1, ordering: .releasing)
                    logger.info("queue deleted", metadata: ["queue": "\(queue)", "jobs_deleted": .stringConvertible(purged)])
                    responder.send(.json(200) { w in
                        w.beginObject()
                        w.field("deleted", queue)
                        w.field("jobs_deleted", purged)
                        w.endObject()
                    })
                }
            }
        }
    }

    /// Jobs a dead-letter script handles in one atomic step; whole-set
    /// operations run batch after batch so none blocks Redis for long.
    static let deadBatch = 1000

    /// Runs `step` until a batch examines fewer ids than `deadBatch`, then
    /// calls `finish` with the total counted.
    private func repeatInBatches(_ step: @escaping (@escaping (Result<(examined: Int, counted: Int), Error>) -> Void) -> Void,
                                 responder: Responder, total: Int = 0, finish: @escaping (Int) -> Void) {
        step { [self] result in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(let n) where n.examined >= Router.deadBatch:
                repeatInBatches(step, responder: responder, total: total + n.counted, finish: finish)
            case .success(let n): finish(total + n.counted)
            }
        }
    }
}

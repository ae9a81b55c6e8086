import Shared
import Synchronization

extension Router {
    /// `POST /v1/queues/{queue}/jobs` and `.../jobs/batch`.
    ///
    /// Everything is checked before Redis is touched, and the jobs are stored
    /// by one script call: a rejected request changes nothing, and a 201 is
    /// only sent once Redis has answered that the jobs are stored.
    func enqueue(queue segment: Substring, _ request: HTTPRequest, _ responder: Responder, batch: Bool, _ caller: Caller) {
        guard let queue = queueName(segment, responder) else { return }
        let body: JSONValue
        do {
            body = try JSONParser.parse(request.body)
        } catch let e as JSONParser.Failure {
            return responder.send(.error(400, "invalid_json", "request body is not valid JSON: \(e)"))
        } catch {
            return responder.send(.error(400, "invalid_json", "request body is not valid JSON"))
        }
        let items: [EnqueueCall.Item]
        do {
            items = try parseItems(queue: queue, body: body, batch: batch, client: caller.clientID)
        } catch let e as FieldError {
            return responder.send(.error(400, "invalid_field", "\(e.field): \(e.message)"))
        } catch {
            return responder.send(.error(400, "invalid_field", "\(error)"))
        }
        let minimal = Router.prefersMinimal(request)
        let limit = config.pendingLimit(for: queue)
        checkQueue(queue, responder) { [self] in
            let clientLimit = caller.client?.maxPending ?? 0
            coalescer.submit(queue: queue, items: items, pendingLimit: limit, clientLimit: clientLimit) { [self] result in
                switch result {
                case .failure(let e):
                    responder.send(failure(e))
                case .success(.clientFull(let unfinished)):
                    APIMetrics.authDenied("client_quota")
                    responder.send(.error(429, "client_quota",
                                          "client \(caller.clientID ?? "") has \(unfinished) unfinished jobs in queue \(queue); "
                                          + "its max_pending is \(clientLimit) (\(items.count) more would cross it)",
                                          headers: [("Retry-After", "1")]))
                case .success(.queueFull(let pending)):
                    responder.send(.error(429, "queue_full", "queue \(queue) holds \(pending) pending jobs; its limit is \(limit)",
                                          headers: [("Retry-After", "1")]))
                case .success(.idempotencyConflict(let index, let existing)):
                    let field = batch ? "jobs[\(index)].idempotency_key" : "idempotency_key"
                    let key = items[index].job.idempotencyKey ?? ""
                    responder.send(.error(409, "idempotency_conflict",
                                          "\(field): '\(key.prefix(200))' was first used for job \(existing) with a different request "
                                          + "(type, payload, priority or options differ); use a new key for a new job"))
                case .success(.enqueued(let entries)):
                    let created = entries.filter { if case .created = $0 { return true } else { return false } }.count
                    if created > 0 { APIMetrics.enqueued(queue, count: created) }
                    var response = batch ? batchResponse(entries, minimal: minimal) : singleResponse(entries[0], minimal: minimal)
                    if minimal { response.headers.append(("Preference-Applied", "return=minimal")) }
                    registerQueue(queue) { responder.send(response) }
                }
            }
        }
    }

    private func parseItems(queue: String, body: JSONValue, batch: Bool, client: String?) throws -> [EnqueueCall.Item] {
        var request = EnqueueRequest(defaults: config.jobDefaults, client: client, random: random)
        defer { random = request.random }
        guard batch else { return [try request.item(queue: queue, from: body)] }
        guard let members = body.objectMembers else { throw FieldError(field: "body", message: "must be a JSON object with a jobs array") }
        for m in members where m.key != "jobs" { throw FieldError(field: m.key, message: "unknown field") }
        guard let jobs = body["jobs"]?.arrayValue else { throw FieldError(field: "jobs", message: "must be an array of job objects") }
        guard (1...EnqueueRequest.maxBatch).contains(jobs.count) else {
            throw FieldError(field: "jobs", message: "must hold 1 to \(EnqueueRequest.maxBatch) jobs, got \(jobs.count)")
        }
        return try jobs.enumerated().map { i, job in try request.item(queue: queue, from: job, index: i) }
    }

    /// `Prefer: return=minimal` (RFC 7240): the client does not want the job
    /// echoed back (a large payload would travel twice).
    static func prefersMinimal(_ request: HTTPRequest) -> Bool {
        guard let prefer = request.header("prefer") else { return false }
        for part in prefer.lowercased().split(separator: ",") {
            let preference = String(part.split(separator: ";").first ?? "").trimmingCharacters(in: " ")
            if preference == "return=minimal" { return true }
        }
        return false
    }

    private func singleResponse(_ entry: EnqueueCall.Entry, minimal: Bool) -> HTTPResponse {
        let (status, job): (Int, Job)
        switch entry {
        case .created(let j): (status, job) = (201, j)
        case .existing(let j): (status, job) = (200, j)
        }
        let location = [("Location", "/v1/jobs/\(job.id)")]
        guard minimal else { return HTTPResponse(status: status, bytes: job.jsonBytes, headers: location) }
        return .json(status, headers: location) { Router.writeMinimal(job, to: &$0) }
    }

    private func batchResponse(_ entries: [EnqueueCall.Entry], minimal: Bool) -> HTTPResponse {
        .json(201) { w in
            w.beginObject()
            w.key("jobs")
            w.beginArray()
            for entry in entries {
                switch entry {
                case .created(let job), .existing(let job):
                    if minimal { Router.writeMinimal(job, to: &w) } else { job.writeJSON(to: &w) }
                }
            }
            w.endArray()
            w.endObject()
        }
    }

    /// A job as `Prefer: return=minimal` answers it: what a client needs to follow it.
    static func writeMinimal(_ job: Job, to w: inout JSONWriter) {
        w.beginObject()
        w.field("id", job.id.text)
        w.field("queue", job.id.queue)
        w.field("state", job.state.rawValue)
        w.endObject()
    }

    /// Checks that the queue may take jobs (see CheckQueueCall), then calls
    /// `then`; answers 409 itself when the queue is new and the registry holds
    /// `SPOOL_MAX_QUEUES` already: every queue name costs Redis keys, a listing
    /// entry and metric series, so they are bounded. Skipped for a queue this
    /// loop registered within the last few seconds.
    private func checkQueue(_ queue: String, _ responder: Responder, then: @escaping () -> Void) {
        if registeredRecently(queue) { return then() }
        redis.run(CheckQueueCall(schema: schema, queue: queue)) { [self] result in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(.new(let count)) where count >= config.maxQueues:
                responder.send(.error(409, "too_many_queues",
                                      "queue \(queue) would be queue number \(count + 1); SPOOL_MAX_QUEUES allows \(config.maxQueues). "
                                      + "Use an existing queue, delete unused ones (DELETE /v1/queues/{queue}) or raise the limit"))
            case .success: then()
            }
        }
    }

    /// Adds the queue to the registry once its jobs are stored (a refused
    /// request changes nothing), then calls `then`. Not part of the enqueue
    /// script: the registry has no `{queue}` hash tag, and a script must stay
    /// within one queue's slot. The answer waits for the SADD (or for the one
    /// this loop has in flight): a client's next request may reach another
    /// loop, on another Redis connection, and `GET /v1/queues/{queue}` or a
    /// pause right after the first enqueue must find the queue.
    private func registerQueue(_ queue: String, then: @escaping () -> Void) {
        if registeredRecently(queue) { return then() }
        if registrationsInFlight[queue] != nil { registrationsInFlight[queue]!.append(then); return }
        registrationsInFlight[queue] = [then]
        sendRegistration(queue)
    }

    private func sendRegistration(_ queue: String) {
        let epoch = Router.queueDeletions.load(ordering: .acquiring)
        redis.send(["SADD", schema.queues, queue]) { [self] result in
            switch result {
            case .success:
                // A queue deleted in this process after the SADD was sent may
                // have lost the name again (its SREM ran later), while the
                // jobs answered now were stored after: register it again.
                if Router.queueDeletions.load(ordering: .acquiring) != epoch { return sendRegistration(queue) }
                registeredQueues[queue] = Clock.monotonicMillis()
            case .failure(let e):
                // The jobs are stored and answered as such; the next enqueue tries again.
                logger.warning("queue registration failed", metadata: ["queue": "\(queue)", "error": "\(e)"])
            }
            for answer in registrationsInFlight.removeValue(forKey: queue) ?? [] { answer() }
        }
    }

    /// Whether this loop registered the queue within `registrationTTLMs`,
    /// since the last queue deletion in this process (which forgets them all).
    private func registeredRecently(_ queue: String) -> Bool {
        let epoch = Router.queueDeletions.load(ordering: .acquiring)
        if epoch != registrationEpoch {
            registeredQueues.removeAll()
            registrationEpoch = epoch
        }
        guard let at = registeredQueues[queue] else { return false }
        return Clock.monotonicMillis() - at < Router.registrationTTLMs
    }
}

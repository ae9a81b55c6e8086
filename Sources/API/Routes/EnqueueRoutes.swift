import Shared

extension Router {
    /// `POST /v1/queues/{queue}/jobs` and `.../jobs/batch`.
    ///
    /// Everything is checked before Redis is touched, and the jobs are stored
    /// by one script call: a rejected request changes nothing, and a 201 is
    /// only sent once Redis has answered that the jobs are stored.
    func enqueue(queue segment: Substring, _ request: HTTPRequest, _ responder: Responder, batch: Bool) {
        guard let queue = HTTPHeadParser.percentDecode(segment), Validation.isValidQueueName(queue) else {
            return responder.send(.error(400, "invalid_field", "queue: '\(segment.prefix(80))' must match [A-Za-z0-9_.-]{1,64}"))
        }
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
            items = try parseItems(queue: queue, body: body, batch: batch)
        } catch let e as FieldError {
            return responder.send(.error(400, "invalid_field", "\(e.field): \(e.message)"))
        } catch {
            return responder.send(.error(400, "invalid_field", "\(error)"))
        }
        let limit = config.pendingLimit(for: queue)
        coalescer.submit(queue: queue, items: items, pendingLimit: limit) { [self] result in
            switch result {
            case .failure(let e):
                responder.send(failure(e))
            case .success(.queueFull(let pending)):
                responder.send(.error(429, "queue_full", "queue \(queue) holds \(pending) pending jobs; its limit is \(limit)",
                                      headers: [("Retry-After", "1")]))
            case .success(.enqueued(let entries)):
                // Registered only once jobs are stored: a refused request changes nothing.
                registerQueue(queue)
                let created = entries.filter { if case .created = $0 { return true } else { return false } }.count
                if created > 0 { APIMetrics.enqueued(queue, count: created) }
                responder.send(batch ? batchResponse(entries) : singleResponse(entries[0]))
            }
        }
    }

    private func parseItems(queue: String, body: JSONValue, batch: Bool) throws -> [EnqueueCall.Item] {
        var request = EnqueueRequest(defaults: config.jobDefaults, random: random)
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

    private func singleResponse(_ entry: EnqueueCall.Entry) -> HTTPResponse {
        switch entry {
        case .created(let job):
            return HTTPResponse(status: 201, bytes: job.jsonBytes, headers: [("Location", "/v1/jobs/\(job.id)")])
        case .existing(let job):
            return HTTPResponse(status: 200, bytes: job.jsonBytes, headers: [("Location", "/v1/jobs/\(job.id)")])
        }
    }

    private func batchResponse(_ entries: [EnqueueCall.Entry]) -> HTTPResponse {
        .json(201) { w in
            w.beginObject()
            w.key("jobs")
            w.beginArray()
            for entry in entries {
                switch entry {
                case .created(let job), .existing(let job): job.writeJSON(to: &w)
                }
            }
            w.endArray()
            w.endObject()
        }
    }

    /// Adds the queue to the set of known queues, once per loop and connection.
    /// Not part of the enqueue script: the set has no `{queue}` hash tag, and a
    /// script must stay within one queue's slot.
    private func registerQueue(_ queue: String) {
        guard !registeredQueues.contains(queue) else { return }
        registeredQueues.insert(queue)
        redis.send(["SADD", schema.queues, queue]) { [self] result in
            if case .failure = result { registeredQueues.remove(queue) }
        }
    }
}

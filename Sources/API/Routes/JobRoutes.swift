import Shared

extension Router {
    /// Parses a job id from the path; answers 404 itself when it is not one.
    func jobID(_ segment: Substring, _ responder: Responder) -> JobID? {
        guard let text = HTTPHeadParser.percentDecode(segment), let id = JobID(parsing: text) else {
            responder.send(.error(404, "not_found", "no job '\(segment.prefix(120))': not a Spool job id"))
            return nil
        }
        return id
    }

    /// Reads a job's hash; calls back with nil when there is no such job
    /// (never enqueued, or its result expired). Answers errors itself.
    func loadJob(_ id: JobID, _ responder: Responder, _ then: @escaping (Job?) -> Void) {
        redis.send(["HGETALL", schema.job(id)]) { [self] result in
            switch result {
            case .failure(let e):
                responder.send(failure(e))
            case .success(let reply):
                let hash = reply.hash
                if hash.isEmpty { return then(nil) }
                do {
                    then(try Job(id: id, hash: hash))
                } catch {
                    logger.error("damaged job hash", metadata: ["job_id": "\(id)", "error": "\(error)"])
                    responder.send(.error(500, "internal_error", "job \(id) is damaged in Redis: \(error)"))
                }
            }
        }
    }

    /// Calls `then` when the caller may see the job (see `Caller.sees`), else
    /// answers 404 as for a job that does not exist. Costs a read only for a
    /// client without `admin`; runs before anything is written for the request.
    func requireJobAccess(_ id: JobID, _ caller: Caller, _ responder: Responder, _ then: @escaping () -> Void) {
        guard let client = caller.client else { return then() }
        guard client.mayUse(queue: id.queue) else { return responder.send(Router.noSuchJob(id)) }
        if client.isAdmin { return then() }
        redis.send(["HGET", schema.job(id), JobField.client]) { [self] result in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(let owner) where owner.string == client.id: then()
            case .success: responder.send(Router.noSuchJob(id))
            }
        }
    }

    /// Longest `?wait=` accepted, in seconds.
    static let maxWaitSeconds = 60.0

    /// `GET /v1/jobs/{id}[?wait=S]` and `GET /v1/jobs/{id}/result[?wait=S]`:
    /// with `wait`, answers when the job reaches a terminal state or after S
    /// seconds, whichever comes first.
    func readJob(id segment: Substring, _ request: HTTPRequest, _ responder: Responder, view: JobView, _ caller: Caller) {
        guard let id = jobID(segment, responder) else { return }
        var waitMs: Int64 = 0
        if let text = request.query["wait"] {
            guard !text.isEmpty, text.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E }),
                  let seconds = Double(text), seconds.isFinite, seconds >= 0, seconds <= Router.maxWaitSeconds else {
                return responder.send(.error(400, "invalid_field", "wait: must be a number of seconds from 0 to 60"))
            }
            waitMs = Int64(seconds * 1000)
        }
        // A wait registers and writes a flag: for a client's own jobs only.
        if waitMs > 0 && caller.client != nil {
            return requireJobAccess(id, caller, responder) { [self] in readJob(id, waitMs: waitMs, responder, view: view, caller) }
        }
        readJob(id, waitMs: waitMs, responder, view: view, caller)
    }

    private func readJob(_ id: JobID, waitMs: Int64, _ responder: Responder, view: JobView, _ caller: Caller) {
        // Register before reading, so a completion between the read and the
        // registration cannot be missed.
        var token = 0
        if waitMs > 0 {
            responder.suspendReading()
            token = waiters.add(id, responder, view: view, waitMs: waitMs)
            // The scripts that finish a job publish its id only while this flag exists.
            redis.send(["SET", schema.waiting(id), "1", "PX", String(waitMs + 5000)]) { _ in }
        }
        loadJob(id, responder) { [self] job in
            guard let job, caller.sees(job) else {
                if waitMs > 0 {
                    waiters.remove(id.text, token: token)
                    redis.send(["DEL", schema.waiting(id)]) { _ in }
                }
                return responder.send(Router.noSuchJob(id))
            }
            if waitMs == 0 || job.state.isTerminal {
                if waitMs > 0 { waiters.remove(id.text, token: token) }
                responder.send(view.response(job))
            }
        }
    }

    static func noSuchJob(_ id: JobID) -> HTTPResponse {
        .error(404, "not_found", "no job \(id) (unknown, or its result expired)")
    }

    /// Answers waiters with the job as it is now, each in its view.
    func answerWaiters(_ id: JobID, _ waiting: [JobWaiters.Waiter]) {
        redis.send(["HGETALL", schema.job(id)]) { [self] result in
            for w in waiting {
                switch result {
                case .failure(let e): w.responder.send(failure(e))
                case .success(let reply):
                    if let job = try? Job(id: id, hash: reply.hash) {
                        w.responder.send(w.view.response(job))
                    } else {
                        w.responder.send(Router.noSuchJob(id))
                    }
                }
            }
        }
    }

    /// Shutdown: every waiting request is answered now with its job's state.
    func answerAllWaiters() {
        waiters.takeAll { id, waiting in answerWaiters(id, waiting) }
    }

    /// After the pub/sub connection came back: answer waiters whose job finished meanwhile.
    func recheckWaiters() {
        waiters.recheckAll { id in
            redis.send(["HGET", schema.job(id), JobField.state]) { [self] result in
                if case .success(let r) = result, let s = r.string, JobState(rawValue: s)?.isTerminal == true {
                    waiters.finished(id.text)
                }
            }
        }
    }

    /// `POST /v1/jobs/{id}/cancel`
    func cancel(id segment: Substring, _ responder: Responder, _ caller: Caller) {
        guard let id = jobID(segment, responder) else { return }
        requireJobAccess(id, caller, responder) { [self] in cancel(id, responder) }
    }

    private func cancel(_ id: JobID, _ responder: Responder) {
        acknowledger.run(CancelCall(schema: schema, jobID: id)) { [self] result, notReplicated in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(.cancelled) where notReplicated != nil:
                responder.send(failure(notReplicated!.naming([id.text])))
            case .success(.missing): responder.send(Router.noSuchJob(id))
            case .success(.conflict(let state)):
                responder.send(.error(409, "conflict", "job \(id) already ended \(state); it cannot be cancelled"))
            case .success(.cancelled):
                loadJob(id, responder) { job in
                    guard let job else { return responder.send(.error(404, "not_found", "no job \(id)")) }
                    responder.send(HTTPResponse(status: 200, body: job.json))
                }
            }
        }
    }

    /// `POST /v1/jobs/{id}/retry`: a dead job back to queued, attempts reset.
    func retry(id segment: Substring, _ responder: Responder, _ caller: Caller) {
        guard let id = jobID(segment, responder) else { return }
        // A client retrying its own job stays within its max_pending; an admin is not held back.
        let limit = caller.isRestricted ? caller.client?.maxPending ?? 0 : 0
        requireJobAccess(id, caller, responder) { [self] in retry(id, clientLimit: limit, responder) }
    }

    private func retry(_ id: JobID, clientLimit: Int64, _ responder: Responder) {
        var call = RetryDeadCall(schema: schema, queue: id.queue, ids: [id])
        call.clientLimit = clientLimit
        acknowledger.run(call) { [self] result, notReplicated in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(let outcome) where outcome.retried == 1 && notReplicated != nil:
                responder.send(failure(notReplicated!.naming([id.text])))
            case .success(let outcome) where outcome.retried == 1:
                loadJob(id, responder) { job in
                    guard let job else { return responder.send(.error(404, "not_found", "no job \(id)")) }
                    responder.send(HTTPResponse(status: 200, body: job.json))
                }
            case .success(let outcome):
                if outcome.refusedState == "missing" {
                    responder.send(Router.noSuchJob(id))
                } else if outcome.refusedState == "client_full" {
                    APIMetrics.authDenied("client_quota")
                    responder.send(.error(429, "client_quota", "job \(id) stays dead: its client has \(clientLimit) unfinished jobs "
                                          + "in queue \(id.queue), its max_pending", headers: [("Retry-After", "1")]))
                } else {
                    responder.send(.error(409, "conflict", "job \(id) is \(outcome.refusedState ?? "not dead"); only dead jobs can be retried"))
                }
            }
        }
    }

}

/// What a read of a job answers: the whole job, or only its result.
enum JobView {
    case job
    case result

    func response(_ job: Job) -> HTTPResponse {
        switch self {
        case .job: return HTTPResponse(status: 200, body: job.json)
        case .result: return JobView.resultResponse(job)
        }
    }

    /// `/result`: the result itself when succeeded, else 409 with the state
    /// (and the job's last error, when it has one).
    private static func resultResponse(_ job: Job) -> HTTPResponse {
        if job.state == .succeeded {
            return HTTPResponse(status: 200, body: job.result ?? "null")
        }
        let message = job.state.isTerminal
            ? "job \(job.id) ended \(job.state.rawValue) and has no result"
            : "job \(job.id) is \(job.state.rawValue) and has not finished yet"
        return .json(409) { w in
            w.beginObject()
            w.key("error")
            w.beginObject()
            w.field("code", job.state.isTerminal ? "no_result" : "not_finished")
            w.field("message", message)
            w.endObject()
            w.field("state", job.state.rawValue)
            w.rawField("job_error", job.error)
            w.endObject()
        }
    }
}

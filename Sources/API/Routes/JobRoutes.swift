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

    /// `GET /v1/jobs/{id}`
    func readJob(id segment: Substring, _ responder: Responder) {
        guard let id = jobID(segment, responder) else { return }
        loadJob(id, responder) { job in
            guard let job else { return responder.send(.error(404, "not_found", "no job \(id) (unknown, or its result expired)")) }
            responder.send(HTTPResponse(status: 200, body: job.json))
        }
    }

    /// `GET /v1/jobs/{id}/result`: the result itself when succeeded, else 409 with the state.
    func readResult(id segment: Substring, _ responder: Responder) {
        guard let id = jobID(segment, responder) else { return }
        loadJob(id, responder) { job in
            guard let job else { return responder.send(.error(404, "not_found", "no job \(id) (unknown, or its result expired)")) }
            if job.state == .succeeded {
                return responder.send(HTTPResponse(status: 200, body: job.result ?? "null"))
            }
            let message = job.state.isTerminal
                ? "job \(id) ended \(job.state.rawValue) and has no result"
                : "job \(id) is \(job.state.rawValue) and has not finished yet"
            responder.send(.json(409) { w in
                w.beginObject()
                w.key("error")
                w.beginObject()
                w.field("code", job.state.isTerminal ? "no_result" : "not_finished")
                w.field("message", message)
                w.endObject()
                w.field("state", job.state.rawValue)
                w.rawField("job_error", job.error)
                w.endObject()
            })
        }
    }
}

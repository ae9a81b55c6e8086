import Shared

/// `GET /v1/jobs/{id}/events` and `GET /v1/queues/{queue}/events`: event
/// logs as server-sent events (EventFeeds follows them).
extension Router {
    static var shuttingDown: HTTPResponse {
        .error(503, "shutting_down", "this API process is shutting down: connect to another replica", headers: [("Retry-After", "1")])
    }

    static var eventStreamHead: HTTPResponse { HTTPResponse(status: 200, body: "", headers: [
        ("Cache-Control", "no-cache"),
        // nginx and some ingresses buffer responses unless told not to.
        ("X-Accel-Buffering", "no"),
    ], contentType: "text/event-stream") }

    /// Where a stream resumes: `Last-Event-ID` (what a reconnecting
    /// EventSource sends, so it wins) or `?after=`. Nil with an answer sent
    /// when malformed; `.some(nil)` when neither is given.
    func eventCursor(_ request: HTTPRequest, _ responder: Responder) -> EventID?? {
        let header = request.header("last-event-id").flatMap { $0.isEmpty ? nil : $0 }
        guard let text = header ?? request.query["after"] else { return .some(nil) }
        guard let id = EventID(text) else {
            let source = header != nil ? "Last-Event-ID" : "after"
            responder.send(.error(400, "invalid_field", "\(source): must be an event id as the stream sends them (like 1764547200000-0), got '\(text.prefix(60))'"))
            return nil
        }
        return .some(id)
    }

    /// A job's events: replayed from the start (or after the cursor), then
    /// followed live until the job's terminal state.
    func jobEvents(id segment: Substring, _ request: HTTPRequest, _ responder: Responder, _ caller: Caller) {
        guard let id = jobID(segment, responder), let after = eventCursor(request, responder) else { return }
        guard !feeds.closed else { return responder.send(Router.shuttingDown) }
        requireJobAccess(id, caller, responder) { [self] in
            redis.run(OpenEventsCall(schema: schema, jobID: id)) { [self] result in
                switch result {
                case .failure(let e): responder.send(failure(e))
                case .success(nil): responder.send(Router.noSuchJob(id))
                case .success(let state?) where state.isTerminal && after != nil:
                    // A finished job asked for what follows its last event (an
                    // EventSource reconnecting after the end): 204 tells it to stop.
                    redis.send(["XRANGE", schema.events(id), "(" + after!.text, "+", "COUNT", "1"]) { [self] result in
                        if case .success(let reply) = result, reply.array?.isEmpty == true {
                            return responder.send(HTTPResponse(status: 204, body: "", contentType: "text/event-stream"))
                        }
                        startJobStream(id, responder, after: after, finished: true)
                    }
                case .success(let state?):
                    startJobStream(id, responder, after: after, finished: state.isTerminal)
                }
            }
        }
    }

    private func startJobStream(_ id: JobID, _ responder: Responder, after: EventID?, finished: Bool) {
        guard !feeds.closed else { return responder.send(Router.shuttingDown) }
        guard let stream = responder.startStream(Router.eventStreamHead) else { return }
        feeds.follow(job: id, stream, after: after, finished: finished)
    }

    /// A queue's state changes from now (or after the cursor, as far as the
    /// capped log still holds), without end. A client without `admin` sees
    /// only its own jobs.
    func queueEvents(_ segment: Substring, _ request: HTTPRequest, _ responder: Responder, _ caller: Caller) {
        guard let queue = queueName(segment, responder), let after = eventCursor(request, responder) else { return }
        guard !feeds.closed else { return responder.send(Router.shuttingDown) }
        guard let stream = responder.startStream(Router.eventStreamHead) else { return }
        feeds.follow(queue: queue, stream, after: after, client: caller.isRestricted ? caller.clientID : nil) { [self] error in
            // The head is sent: the stream can only end, and the client retry.
            logger.warning("queue event stream ended: Redis failed", metadata: ["queue": "\(queue)", "error": "\(error)"])
            stream.finish()
        }
    }
}

import Shared

extension Router {
    /// `GET /healthz`: the process runs. Never touches Redis, so a Redis blip
    /// does not get every replica restarted by a liveness probe.
    func health(_ responder: Responder) {
        responder.send(HTTPResponse(status: 200, body: #"{"status":"ok"}"#))
    }

    /// `GET /metrics`: Prometheus text format. Queue depths are read from
    /// Redis now, so any replica reports the same numbers.
    func metrics(_ responder: Responder) {
        redis.send(["SMEMBERS", schema.queues]) { [self] result in
            let names = ((try? result.get())?.array ?? []).compactMap(\.string).filter(Validation.isValidQueueName).sorted()
            gatherStats(names) { stats in
                if case .success(let all) = stats { all.forEach(APIMetrics.queue) }
                responder.send(HTTPResponse(status: 200, body: MetricsSetup.exposition(),
                                            contentType: "text/plain; version=0.0.4; charset=utf-8"))
            }
        }
    }

    /// `GET /readyz`: 200 when Redis answers a PING in time, 503 otherwise.
    func ready(_ responder: Responder) {
        redis.send(["PING"]) { result in
            if case .success(.status("PONG")) = result {
                responder.send(HTTPResponse(status: 200, body: #"{"status":"ready","redis":"ok"}"#))
            } else {
                let why: String
                switch result {
                case .failure(let e): why = "\(e)"
                case .success(let r): why = "unexpected reply \(r)"
                }
                responder.send(.error(503, "redis_unavailable", "Redis did not answer: \(why)", headers: [("Retry-After", "1")]))
            }
        }
    }
}

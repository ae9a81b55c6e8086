import Shared

/// `/v1/limits`: limits shared by every worker (LimitGate in the worker
/// enforces them). A limit is shared by whoever names it (a provider's key
/// serves every tenant), so these routes need a client whose queues are `*`:
/// reading shows every queue's use, changing it affects every queue.
extension Router {
    /// Most limits that can be defined (each costs a few keys; a listing reads them all).
    static let maxLimits = 10_000
    static let defaultLimitPage = 100
    static let maxLimitPage = 1000
    /// The bounds of each field of a limit's body.
    static let limitConcurrency: ClosedRange<Int64> = 1...1_000_000
    static let limitRateCount: ClosedRange<Int64> = 1...1_000_000
    static let limitRatePeriodMs: ClosedRange<Int64> = 1...86_400_000
    static let limitUnitsPerMinute: ClosedRange<Int64> = 1...1_000_000_000_000

    /// Parses a limit name from the path; answers 400 itself when it is not one.
    private func limitName(_ segment: Substring, _ responder: Responder) -> String? {
        guard let name = HTTPHeadParser.percentDecode(segment), Validation.isValidLimitName(name) else {
            responder.send(.error(400, "invalid_field", "limit: '\(segment.prefix(80))' must match [A-Za-z0-9_.:-]{1,80}"))
            return nil
        }
        return name
    }

    /// `PUT /v1/limits/{name}`: creates or replaces the limit (every field
    /// optional; one left out is no bound). Jobs already running keep their
    /// slots; parked jobs get a look at once.
    func putLimit(_ segment: Substring, _ request: HTTPRequest, _ responder: Responder) {
        guard let name = limitName(segment, responder) else { return }
        let definition: LimitDefinition
        do {
            definition = try Router.parseLimit(request.body)
        } catch let e as FieldError {
            return responder.send(.error(400, "invalid_field", "\(e.field): \(e.message)"))
        } catch {
            return responder.send(.error(400, "invalid_json", "request body is not valid JSON: \(error)"))
        }
        redis.send(["SISMEMBER", schema.limits, name]) { [self] known in
            switch known {
            case .failure(let e): return responder.send(failure(e))
            case .success(let r) where r.int != 1:
                // A new limit: bounded in number (checked, then added: two
                // racing PUTs may pass the bound by one).
                redis.send(["SCARD", schema.limits]) { [self] count in
                    switch count {
                    case .failure(let e): responder.send(failure(e))
                    case .success(let c) where (c.int ?? 0) >= Int64(Router.maxLimits):
                        responder.send(.error(409, "too_many_limits",
                                              "\(Router.maxLimits) limits are defined already; delete one first"))
                    case .success:
                        define(name, definition, created: true, responder)
                    }
                }
            case .success:
                define(name, definition, created: false, responder)
            }
        }
    }

    private func define(_ name: String, _ definition: LimitDefinition, created: Bool, _ responder: Responder) {
        redis.run(DefineLimitCall(schema: schema, limit: name, definition: definition)) { [self] result in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(let queues):
                redis.send(["SADD", schema.limits, name]) { [self] added in
                    if case .failure(let e) = added { return responder.send(failure(e)) }
                    wakeParked(queues, limit: name)
                    logger.info(created ? "limit created" : "limit changed", metadata: ["limit": "\(name)"])
                    sendLimit(name, status: created ? 201 : 200, responder)
                }
            }
        }
    }

    /// `GET /v1/limits/{name}`: the definition and current use.
    func getLimit(_ segment: Substring, _ responder: Responder) {
        guard let name = limitName(segment, responder) else { return }
        sendLimit(name, status: 200, responder)
    }

    private func sendLimit(_ name: String, status: Int, _ responder: Responder) {
        redis.run(LimitStatusCall(schema: schema, limit: name)) { [self] result in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(let s) where !s.defined: responder.send(.error(404, "not_found", "no limit '\(name)'"))
            case .success(let s): responder.send(.json(status) { s.writeJSON(to: &$0) })
            }
        }
    }

    /// `DELETE /v1/limits/{name}`: its jobs run unbounded from now on.
    func deleteLimit(_ segment: Substring, _ responder: Responder) {
        guard let name = limitName(segment, responder) else { return }
        redis.run(DeleteLimitCall(schema: schema, limit: name)) { [self] result in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(let out):
                redis.send(["SREM", schema.limits, name]) { [self] removed in
                    if case .failure(let e) = removed { return responder.send(failure(e)) }
                    let wasListed = (try? removed.get())?.int == 1
                    guard out.existed || wasListed else { return responder.send(.error(404, "not_found", "no limit '\(name)'")) }
                    wakeParked(out.wake, limit: name)
                    logger.info("limit deleted", metadata: ["limit": "\(name)"])
                    responder.send(.json(200) { w in w.beginObject(); w.field("key", name); w.field("deleted", true); w.endObject() })
                }
            }
        }
    }

    /// `GET /v1/limits?limit=&cursor=`: the limits by name, with their use.
    func listLimits(_ request: HTTPRequest, _ responder: Responder) {
        var pageSize = Router.defaultLimitPage
        if let text = request.query["limit"] {
            guard let n = Int(text), (1...Router.maxLimitPage).contains(n) else {
                return responder.send(.error(400, "invalid_field", "limit: must be a whole number from 1 to \(Router.maxLimitPage)"))
            }
            pageSize = n
        }
        let cursor = request.query["cursor"] ?? ""
        guard cursor.isEmpty || Validation.isValidLimitName(cursor) else {
            return responder.send(.error(400, "invalid_field", "cursor: not a cursor this API returned"))
        }
        redis.send(["SMEMBERS", schema.limits]) { [self] result in
            switch result {
            case .failure(let e): responder.send(failure(e))
            case .success(let reply):
                let names = (reply.array ?? []).compactMap(\.string).filter { cursor.isEmpty || $0 > cursor }.sorted()
                let page = Array(names.prefix(pageSize))
                let next = names.count > pageSize ? page.last : nil
                fanOut(page, { [self] name, reply in redis.run(LimitStatusCall(schema: schema, limit: name), reply) }) { result in
                    switch result {
                    case .failure(let e): responder.send(self.failure(e))
                    case .success(let limits):
                        responder.send(.json(200) { w in
                            w.beginObject()
                            w.key("limits")
                            w.beginArray()
                            for s in limits where s.defined { s.writeJSON(to: &w) }
                            w.endArray()
                            w.field("next_cursor", next)
                            w.endObject()
                        })
                    }
                }
            }
        }
    }

    /// Wakes the idle workers of queues whose jobs wait for the limit (a
    /// token naming it, as a release pushes: see ParkedLimits in the worker).
    private func wakeParked(_ queues: [String], limit: String) {
        for q in queues { redis.send(["LPUSH", schema.wake(q), "limit:" + limit]) { _ in } }
    }

    /// A limit's body: `{"concurrency": 3, "rate": {"count": 10, "period_ms":
    /// 1000}, "units_per_minute": 90000}`, every field optional; unknown
    /// fields are refused.
    static func parseLimit(_ body: [UInt8]) throws -> LimitDefinition {
        let value = try JSONParser.parse(body.isEmpty ? Array("{}".utf8) : body)
        guard let members = value.objectMembers else { throw FieldError(field: "body", message: "must be a JSON object") }
        for m in members where !["concurrency", "rate", "units_per_minute"].contains(m.key) {
            throw FieldError(field: m.key, message: "unknown field (a limit has concurrency, rate, units_per_minute)")
        }
        var d = LimitDefinition()
        d.concurrency = try wholeNumber(value["concurrency"], "concurrency", limitConcurrency)
        d.unitsPerMinute = try wholeNumber(value["units_per_minute"], "units_per_minute", limitUnitsPerMinute)
        if let rate = value["rate"], !rate.isNull {
            guard let fields = rate.objectMembers else {
                throw FieldError(field: "rate", message: "must be an object {\"count\": n, \"period_ms\": ms}")
            }
            for m in fields where !["count", "period_ms"].contains(m.key) {
                throw FieldError(field: "rate." + m.key, message: "unknown field (a rate has count and period_ms)")
            }
            guard let count = try wholeNumber(rate["count"], "rate.count", limitRateCount) else {
                throw FieldError(field: "rate.count", message: "is required")
            }
            guard let period = try wholeNumber(rate["period_ms"], "rate.period_ms", limitRatePeriodMs) else {
                throw FieldError(field: "rate.period_ms", message: "is required (1000 for per second, 60000 for per minute)")
            }
            d.rateCount = count
            d.ratePeriodMs = period
        }
        return d
    }

    private static func wholeNumber(_ v: JSONValue?, _ field: String, _ range: ClosedRange<Int64>) throws -> Int64? {
        guard let v, !v.isNull else { return nil }
        guard case .number = v, let n = v.integerValue else {
            throw FieldError(field: field, message: "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        guard range.contains(n) else {
            throw FieldError(field: field, message: "must be from \(range.lowerBound) to \(range.upperBound), got \(n)")
        }
        return n
    }
}

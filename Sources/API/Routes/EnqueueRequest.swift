import Shared

/// A request field that is missing, of the wrong type, or out of range.
struct FieldError: Error {
    let field: String
    let message: String
}

/// Turns one job object of an enqueue body into a job to store, checking every
/// field. Unknown fields are refused, so a typo (`"max_attempt"`) is an error
/// rather than a silently ignored setting.
struct EnqueueRequest {
    static let fields: Set<String> = [
        "type", "payload", "priority", "max_attempts", "timeout_ms", "backoff_ms", "result_ttl_s",
        "delay_ms", "run_at", "idempotency_key", "limit", "cost", "group",
    ]
    static let maxAttempts: ClosedRange<Int64> = 1...1000
    static let timeoutMs: ClosedRange<Int64> = 1...604_800_000
    static let backoffMs: ClosedRange<Int64> = 0...3_600_000
    static let resultTTLSeconds: ClosedRange<Int64> = 1...31_536_000
    static let delayMs: ClosedRange<Int64> = 0...31_536_000_000
    static let maxIdempotencyKeyLength = 200
    static let cost: ClosedRange<Int64> = 0...1_000_000_000
    static let maxBatch = 1000

    let defaults: JobOptions
    /// The client enqueuing (recorded on each job), nil when authentication is off.
    let client: String?
    /// The loop's id generator (one per thread, never shared).
    var random: FastRandom

    /// `index` is the job's place in a batch: errors then name "jobs[3].type".
    mutating func item(queue: String, from value: JSONValue, index: Int? = nil) throws -> EnqueueCall.Item {
        // Built only for an error: formatting it for every job of a batch showed in profiles.
        var path: String { index.map { "jobs[\($0)]." } ?? "" }
        guard let members = value.objectMembers else {
            throw FieldError(field: path.isEmpty ? "body" : String(path.dropLast()), message: "must be a JSON object, not \(value.typeName)")
        }
        for m in members where !EnqueueRequest.fields.contains(m.key) {
            throw FieldError(field: path + m.key, message: "unknown field")
        }
        func f(_ name: String) -> String { path + name }

        guard let typeValue = value["type"] else { throw FieldError(field: f("type"), message: "is required") }
        guard let type = typeValue.stringValue else { throw FieldError(field: f("type"), message: "must be a string") }
        guard Validation.isValidJobType(type) else {
            throw FieldError(field: f("type"), message: "must match [A-Za-z0-9_.:-]{1,128}")
        }
        var job = Job(id: JobID.generate(queue: queue, using: &random), type: type)
        job.client = client
        job.payload = (value["payload"] ?? .null).jsonText
        if let p = value["priority"] {
            guard let text = p.stringValue, let priority = Priority(rawValue: text) else {
                throw FieldError(field: f("priority"), message: "must be one of urgent, high, normal, low")
            }
            job.priority = priority
        }
        job.options = defaults
        job.options.maxAttempts = Int(try integer(value, "max_attempts", path, EnqueueRequest.maxAttempts) ?? Int64(defaults.maxAttempts))
        job.options.timeoutMs = try integer(value, "timeout_ms", path, EnqueueRequest.timeoutMs) ?? defaults.timeoutMs
        job.options.backoffMs = try integer(value, "backoff_ms", path, EnqueueRequest.backoffMs) ?? defaults.backoffMs
        job.options.resultTTLSeconds = try integer(value, "result_ttl_s", path, EnqueueRequest.resultTTLSeconds) ?? defaults.resultTTLSeconds

        if let l = value["limit"], !l.isNull {
            guard let name = l.stringValue, Validation.isValidLimitName(name) else {
                throw FieldError(field: f("limit"), message: "must be a limit name matching [A-Za-z0-9_.:-]{1,80}")
            }
            job.limit = name
        }
        job.cost = try integer(value, "cost", path, EnqueueRequest.cost)
        if let g = value["group"], !g.isNull {
            guard let name = g.stringValue, Validation.isValidLimitName(name, maxLength: 64) else {
                throw FieldError(field: f("group"), message: "must be a group name matching [A-Za-z0-9_.:-]{1,64}")
            }
            job.group = name
        }

        var item = EnqueueCall.Item(job: job)
        let delay = try integer(value, "delay_ms", path, EnqueueRequest.delayMs)
        if let runAtValue = value["run_at"], !runAtValue.isNull {
            guard delay == nil else { throw FieldError(field: f("run_at"), message: "give delay_ms or run_at, not both") }
            guard let text = runAtValue.stringValue, let at = Timestamp.parse(text) else {
                throw FieldError(field: f("run_at"), message: "must be an RFC 3339 timestamp such as 2026-01-02T15:04:05Z")
            }
            guard at <= Clock.nowMillis() + EnqueueRequest.delayMs.upperBound else {
                throw FieldError(field: f("run_at"), message: "is more than a year ahead")
            }
            item.runAt = max(at, 1)
        }
        item.delayMs = delay ?? 0
        if let k = value["idempotency_key"], !k.isNull {
            guard let key = k.stringValue, !key.isEmpty, key.count <= EnqueueRequest.maxIdempotencyKeyLength else {
                throw FieldError(field: f("idempotency_key"), message: "must be a string of 1 to \(EnqueueRequest.maxIdempotencyKeyLength) characters")
            }
            item.job.idempotencyKey = key
        }
        return item
    }

    /// `name` of `object` as a whole number within `range`; nil when absent or
    /// null. `path` prefixes the name in errors ("jobs[3].").
    private func integer(_ object: JSONValue, _ name: String, _ path: @autoclosure () -> String,
                         _ range: ClosedRange<Int64>) throws -> Int64? {
        guard let v = object[name], !v.isNull else { return nil }
        var field: String { path() + name }
        guard case .number = v else { throw FieldError(field: field, message: "must be a whole number, not \(v.typeName)") }
        guard let n = v.integerValue else { throw FieldError(field: field, message: "must be a whole number from \(range.lowerBound) to \(range.upperBound)") }
        guard range.contains(n) else {
            throw FieldError(field: field, message: "must be from \(range.lowerBound) to \(range.upperBound), got \(n)")
        }
        return n
    }
}

/// The job envelope: the fields of a job's hash in Redis, and how they are
/// written, read and rendered as the API's JSON.
///
/// `payload`, `result`, `error` and `progress` are stored as JSON text, so the
/// API can splice them into a response without parsing them again.
public struct Job: Equatable, Sendable {
    public var id: JobID
    public var type: String
    public var payload: String = "null"
    public var priority: Priority = .normal
    public var state: JobState = .queued
    public var attempts: Int = 0
    public var options: JobOptions = JobOptions()
    /// Timestamps in microseconds since the epoch, on Redis' clock.
    public var createdUs: Int64? = nil
    public var runAtUs: Int64? = nil
    public var startedUs: Int64? = nil
    public var finishedUs: Int64? = nil
    public var worker: String? = nil
    public var error: String? = nil
    public var result: String? = nil
    public var progress: String? = nil
    public var idempotencyKey: String? = nil
    /// The API client that enqueued the job (its id in the auth file); nil
    /// when authentication was off. Only that client, and admins, see the job.
    public var client: String? = nil
    /// The limit the job runs under (`PUT /v1/limits/{name}`), and the units
    /// of its budget the job declares it will use.
    public var limit: String? = nil
    public var cost: Int64? = nil
    /// The tenant the job belongs to: a queue serves its groups in turn.
    public var group: String? = nil

    public init(id: JobID, type: String) {
        self.id = id
        self.type = type
    }
}

/// Per-job settings given at enqueue, with their defaults.
public struct JobOptions: Equatable, Sendable {
    public var maxAttempts: Int = 5
    public var timeoutMs: Int64 = 1_800_000
    public var backoffMs: Int64 = 1000
    public var resultTTLSeconds: Int64 = 86400

    public init() {}
}

/// Field names in a job's hash. The Lua scripts use the same names.
/// `created_at`, `run_at`, `started_at` and `finished_at` hold microseconds
/// since the epoch (Redis' clock); the API shows them as RFC 3339 with ms.
public enum JobField {
    public static let type = "type"
    public static let payload = "payload"
    public static let priority = "priority"
    public static let state = "state"
    public static let attempts = "attempts"
    public static let maxAttempts = "max_attempts"
    public static let timeoutMs = "timeout_ms"
    public static let backoffMs = "backoff_ms"
    public static let resultTTL = "result_ttl_s"
    public static let createdAt = "created_at"
    public static let runAt = "run_at"
    public static let startedAt = "started_at"
    public static let finishedAt = "finished_at"
    public static let worker = "worker"
    public static let error = "error"
    public static let result = "result"
    public static let progress = "progress"
    public static let idempotencyKey = "idem"
    public static let client = "client"
    public static let limit = "limit"
    public static let cost = "cost"
    public static let group = "group"
    /// With encryption and an idempotency key: the payload's keyed digest.
    public static let payloadMAC = "pmac"
}

public struct JobDecodingError: Error, CustomStringConvertible {
    public let description: String
}

extension Job {
    /// The fields that enqueue writes besides `type` and `payload` (which the
    /// script writes itself; state and timestamps it sets too). Values equal
    /// to their defaults are left out (normal priority, default options):
    /// readers fall back to them, and a pending job takes a fifth less memory.
    public var optionalFields: [String] {
        var f: [String] = []
        if priority != .normal { f += [JobField.priority, priority.rawValue] }
        let defaults = JobOptions()
        if options.maxAttempts != defaults.maxAttempts { f += [JobField.maxAttempts, String(options.maxAttempts)] }
        if options.timeoutMs != defaults.timeoutMs { f += [JobField.timeoutMs, String(options.timeoutMs)] }
        if options.backoffMs != defaults.backoffMs { f += [JobField.backoffMs, String(options.backoffMs)] }
        if options.resultTTLSeconds != defaults.resultTTLSeconds { f += [JobField.resultTTL, String(options.resultTTLSeconds)] }
        if let idempotencySlot { f += [JobField.idempotencyKey, idempotencySlot] }
        if let client { f += [JobField.client, client] }
        if let limit { f += [JobField.limit, limit] }
        if let cost { f += [JobField.cost, String(cost)] }
        if let group { f += [JobField.group, group] }
        // Encrypted payloads never compare equal: the enqueue script compares
        // their digests instead (FieldCipher.payloadMACs). `pmacs` is only read
        // by the script, `pmac` stored.
        if idempotencyKey != nil, let cipher = FieldCipher.shared {
            let macs = cipher.payloadMACs(payload)
            f += [JobField.payloadMAC, macs[0], "pmacs", macs.joined(separator: ",")]
        }
        return f
    }

    /// The idempotency key as stored (the `idem` field, and the suffix of its
    /// Redis key): scoped by the client, `client/key`, so two clients' keys
    /// never meet. (Client ids hold no `/`.)
    public var idempotencySlot: String? {
        guard let idempotencyKey else { return nil }
        return client.map { $0 + "/" + idempotencyKey } ?? idempotencyKey
    }

    /// Every field enqueue stores for the job, as field, value pairs.
    public var enqueueFields: [String] {
        [JobField.type, type, JobField.payload, payload] + optionalFields
    }

    /// Rebuilds a job from its hash (as HGETALL returns it). Throws when a field
    /// that every job has is missing or malformed: the hash was damaged.
    public init(id: JobID, hash: [String: String]) throws {
        func required(_ name: String) throws -> String {
            guard let v = hash[name] else { throw JobDecodingError(description: "job hash has no '\(name)' field") }
            return v
        }
        func number(_ name: String) throws -> Int64? {
            guard let v = hash[name], !v.isEmpty else { return nil }
            guard let n = Int64(v) else { throw JobDecodingError(description: "job field '\(name)' is not a number: \(v.prefix(40))") }
            return n
        }
        self.init(id: id, type: try required(JobField.type))
        let stateText = try required(JobField.state)
        guard let state = JobState(rawValue: stateText) else {
            throw JobDecodingError(description: "job field 'state' has an unknown value: \(stateText.prefix(40))")
        }
        self.state = state
        // Sealed fields (SPOOL_ENCRYPTION_KEY_FILE) are opened here, where every reader passes.
        func opened(_ name: String) throws -> String? {
            guard let value = hash[name] else { return nil }
            guard FieldCipher.isSealed(value) else { return value }
            guard let cipher = FieldCipher.shared else {
                throw JobDecodingError(description: "job field '\(name)' is encrypted, and SPOOL_ENCRYPTION_KEY_FILE is not set here")
            }
            do {
                return try cipher.open(value, job: id.text, field: name)
            } catch {
                throw JobDecodingError(description: "\(error)")
            }
        }
        payload = try opened(JobField.payload) ?? "null"
        priority = hash[JobField.priority].flatMap(Priority.init(rawValue:)) ?? .normal
        attempts = Int(try number(JobField.attempts) ?? 0)
        options.maxAttempts = Int(try number(JobField.maxAttempts) ?? Int64(options.maxAttempts))
        options.timeoutMs = try number(JobField.timeoutMs) ?? options.timeoutMs
        options.backoffMs = try number(JobField.backoffMs) ?? options.backoffMs
        options.resultTTLSeconds = try number(JobField.resultTTL) ?? options.resultTTLSeconds
        createdUs = try number(JobField.createdAt)
        runAtUs = try number(JobField.runAt)
        startedUs = try number(JobField.startedAt)
        finishedUs = try number(JobField.finishedAt)
        worker = hash[JobField.worker].flatMap { $0.isEmpty ? nil : $0 }
        error = try opened(JobField.error).flatMap { $0.isEmpty ? nil : $0 }
        result = try opened(JobField.result)
        progress = try opened(JobField.progress).flatMap { $0.isEmpty ? nil : $0 }
        client = hash[JobField.client]
        limit = hash[JobField.limit]
        cost = try number(JobField.cost)
        group = hash[JobField.group]
        idempotencyKey = hash[JobField.idempotencyKey].map { slot in
            guard let client, slot.hasPrefix(client + "/") else { return slot }
            return String(slot.dropFirst(client.utf8.count + 1))
        }
    }

    /// The job as the API shows it (`GET /v1/jobs/{id}`).
    public func writeJSON(to w: inout JSONWriter) {
        w.beginObject()
        w.field("id", id.text)
        w.field("queue", id.queue)
        w.field("type", type)
        w.field("state", state.rawValue)
        w.field("priority", priority.rawValue)
        w.field("attempts", attempts)
        w.field("max_attempts", options.maxAttempts)
        w.field("timeout_ms", options.timeoutMs)
        w.field("backoff_ms", options.backoffMs)
        w.field("result_ttl_s", options.resultTTLSeconds)
        w.rawField("payload", payload)
        w.rawField("progress", progress)
        w.rawField("error", error)
        if state == .succeeded { w.rawField("result", result ?? "null") }
        w.field("created_at", createdUs.map(Timestamp.format(micros:)))
        w.field("run_at", runAtUs.map(Timestamp.format(micros:)))
        w.field("started_at", startedUs.map(Timestamp.format(micros:)))
        w.field("finished_at", finishedUs.map(Timestamp.format(micros:)))
        w.field("worker", worker)
        if let idempotencyKey { w.field("idempotency_key", idempotencyKey) }
        if let client { w.field("client", client) }
        if let limit { w.field("limit", limit) }
        if let cost { w.field("cost", cost) }
        if let group { w.field("group", group) }
        w.endObject()
    }

    public var json: String { String(decoding: jsonBytes, as: UTF8.self) }

    public var jsonBytes: [UInt8] {
        var w = JSONWriter(capacity: 512)
        writeJSON(to: &w)
        return w.bytes
    }

    /// The error field as stored: `{"message": "...", "attempt": n}`.
    public static func errorJSON(message: String, attempt: Int) -> String {
        var w = JSONWriter()
        w.beginObject()
        w.field("message", message)
        w.field("attempt", attempt)
        w.endObject()
        return w.text
    }
}

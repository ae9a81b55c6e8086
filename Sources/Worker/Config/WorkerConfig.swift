import Logging
import Shared

/// Every setting of spool-worker, resolved once at start (flag, then env, then default).
struct WorkerConfig {
    var queues = ["default"]
    var concurrency = 8
    /// Job type → shell command.
    var commands: [String: String] = [:]
    /// Job type → the limit its jobs take when they name none.
    var limitsByType: [String: String] = [:]
    var redis = RedisEndpoint()
    var prefix = "spool"
    var leaseMs: Int64 = 30_000
    var heartbeatMs: Int64 = 5_000
    var shutdownGraceMs: Int64 = 25_000
    var childLimits = ChildProcess.Limits()
    var persistent = PersistentHandler.Settings()
    var deadTTLSeconds: Int64 = 604_800
    var deadMax = 10_000
    /// Caps of one job's event log (entries, bytes of chunks and events).
    var eventLogMaxEvents = 10_000
    var eventLogMaxBytes = 4 << 20
    var redisTimeoutMs: Int64 = 5_000
    /// Worker processes; above 1 this process only supervises them.
    var processes = 1
    /// This process's index under a supervisor (part of its worker id).
    var processIndex: Int?
    /// How many worker processes its supervisor runs (1 without one).
    var siblingProcesses = 1
    /// Port of the health endpoints; nil = none.
    var healthPort: Int?
    var healthPortOrigin = "SPOOL_HEALTH_PORT"
    var logLevel: Logger.Level = .info
    var logFormat: LogSetup.Format = .json
}

extension WorkerConfig {
    init(_ source: SettingSource) throws {
        typealias S = WorkerSettings
        let queueText = source.string(S.queues, default: "default")
        queues = queueText.split(separator: ",").map { String($0).trimmingCharacters(in: " ") }
        let queueOrigin = source.origin(S.queues)
        guard !queues.isEmpty else { throw ConfigError("\(queueOrigin): give at least one queue") }
        for q in queues where !Validation.isValidQueueName(q) {
            throw ConfigError("\(queueOrigin): queue '\(q)' must match [A-Za-z0-9_.-]{1,64}")
        }
        guard Set(queues).count == queues.count else { throw ConfigError("\(queueOrigin): a queue is named twice") }
        concurrency = Int(try source.integer(S.concurrency, default: 8))
        commands = try WorkerConfig.parseHandlers(source.all(S.handler), env: source.environmentValue(S.handler),
                                                  json: source.raw(S.handlersJSON)?.value, file: source.raw(S.handlersFile))
        limitsByType = try WorkerConfig.parseLimitsByType(source.raw(S.limitsByType))
        redis = try source.redisEndpoint()
        prefix = try source.prefix()
        leaseMs = try source.integer(S.leaseMs, default: 30_000)
        heartbeatMs = try source.integer(S.heartbeatMs, default: min(5000, leaseMs / 3))
        guard heartbeatMs * 2 < leaseMs else {
            throw ConfigError("\(source.origin(S.heartbeatMs)): \(heartbeatMs) ms must be below half the lease "
                              + "(\(source.origin(S.leaseMs)) \(leaseMs) ms), or leases expire between heartbeats")
        }
        shutdownGraceMs = try source.integer(S.shutdownGraceMs, default: 25_000)
        childLimits.killGraceMs = try source.integer(S.killGraceMs, default: min(5000, leaseMs / 6))
        childLimits.maxStdoutBytes = Int(try source.integer(S.maxOutputBytes, default: 1 << 20))
        persistent.maxJobs = Int(try source.integer(S.persistentMaxJobs, default: 1000))
        if source.raw(S.persistentMaxRSS) != nil {
            persistent.maxResidentBytes = try source.integer(S.persistentMaxRSS, default: 0) << 20
        }
        deadTTLSeconds = try source.integer(S.deadTTL, default: 604_800)
        deadMax = Int(try source.integer(S.deadMax, default: 10_000))
        eventLogMaxEvents = Int(try source.integer(S.eventLogMaxEvents, default: 10_000))
        eventLogMaxBytes = Int(try source.integer(S.eventLogMaxBytes, default: 4 << 20))
        // A call stuck that long must leave time to renew a lease, and to stop
        // a job whose lease cannot be renewed before it expires (LeaseWatchdog).
        redisTimeoutMs = try source.integer(S.redisTimeoutMs, default: min(5000, leaseMs / 4))
        guard redisTimeoutMs * 3 <= leaseMs else {
            throw ConfigError("\(source.origin(S.redisTimeoutMs)): \(redisTimeoutMs) ms must be at most a third of the lease "
                              + "(\(source.origin(S.leaseMs)) \(leaseMs) ms): a Redis call stuck that long must leave time "
                              + "to renew leases and to stop jobs whose lease cannot be renewed")
        }
        processes = Int(try source.integer(S.processes, default: 1))
        // Set by the supervisor for its children, not by people.
        processIndex = source.raw(flag: nil, flagName: "", env: "SPOOL_PROCESS_INDEX").flatMap { Int($0.value) }
        siblingProcesses = source.raw(flag: nil, flagName: "", env: "SPOOL_PROCESS_COUNT").flatMap { Int($0.value) }
            .map { max(1, $0) } ?? 1
        if source.raw(S.healthPort) != nil {
            healthPortOrigin = source.origin(S.healthPort)
            healthPort = Int(try source.integer(S.healthPort, default: 0))
        }
        logLevel = try source.logLevel()
        logFormat = try source.logFormat()
    }

    /// `TYPE=LIMIT,TYPE=LIMIT`.
    static func parseLimitsByType(_ raw: (value: String, origin: String)?) throws -> [String: String] {
        guard let (text, origin) = raw else { return [:] }
        var out: [String: String] = [:]
        for spec in text.split(separator: ",") {
            let parts = spec.split(separator: "=", maxSplits: 1).map { String($0).trimmingCharacters(in: " ") }
            guard parts.count == 2, Validation.isValidJobType(parts[0]), Validation.isValidLimitName(parts[1]) else {
                throw ConfigError("\(origin): '\(spec)' must be TYPE=LIMIT, a job type [A-Za-z0-9_.:-]{1,128} and a limit "
                                  + "name [A-Za-z0-9_.:-]{1,80}")
            }
            guard out[parts[0]] == nil else { throw ConfigError("\(origin): job type '\(parts[0])' is given twice") }
            out[parts[0]] = parts[1]
        }
        return out
    }

    /// Handlers (job type → command) from, in this order, each later one
    /// overriding an earlier one for the same type:
    /// - SPOOL_HANDLERS: `TYPE=COMMAND,TYPE=COMMAND` (simple commands: a comma
    ///   always separates two handlers);
    /// - SPOOL_HANDLERS_JSON: a JSON object `{"TYPE": "COMMAND", ...}`, for
    ///   commands with commas or quotes (compose files, Kubernetes manifests);
    /// - `--handlers-file PATH` (SPOOL_HANDLERS_FILE): a file holding such an object;
    /// - `--handler TYPE=COMMAND` flags (the whole flag is one command).
    static func parseHandlers(_ flags: [String], env: String?, json: String? = nil,
                              file: (value: String, origin: String)? = nil) throws -> [String: String] {
        var out: [String: String] = [:]
        func add(_ origin: String, _ type: String, _ command: String) throws {
            let type = type.trimmingCharacters(in: " ")
            let command = command.trimmingCharacters(in: " ")
            guard Validation.isValidJobType(type) else {
                throw ConfigError("\(origin): job type '\(type)' must match [A-Za-z0-9_.:-]{1,128}")
            }
            guard !command.isEmpty else { throw ConfigError("\(origin): the command for '\(type)' is empty") }
            do {
                _ = try HandlerSpec(command)
            } catch {
                throw ConfigError("\(origin): the handler for '\(type)': \(error)")
            }
            out[type] = command
        }
        func addPairs(_ origin: String, _ specs: [String]) throws {
            for spec in specs {
                guard let eq = spec.firstIndex(of: "=") else {
                    throw ConfigError("\(origin): '\(spec)' must be TYPE=COMMAND")
                }
                try add(origin, String(spec[..<eq]), String(spec[spec.index(after: eq)...]))
            }
        }
        func addObject(_ origin: String, _ text: String) throws {
            let value: JSONValue
            do { value = try JSONParser.parse(Array(text.utf8)) } catch {
                throw ConfigError("\(origin): not valid JSON (\(error)); expected {\"TYPE\": \"COMMAND\", ...}")
            }
            guard let members = value.objectMembers else {
                throw ConfigError("\(origin): expected a JSON object {\"TYPE\": \"COMMAND\", ...}, not \(value.typeName)")
            }
            for m in members {
                guard let command = m.value.stringValue else {
                    throw ConfigError("\(origin): the command for '\(m.key)' must be a string")
                }
                try add(origin, m.key, command)
            }
        }
        try addPairs("SPOOL_HANDLERS", env.map { $0.split(separator: ",").map(String.init) } ?? [])
        if let json { try addObject("SPOOL_HANDLERS_JSON", json) }
        if let (path, origin) = file {
            guard let text = FileInput.read(path, maxBytes: 1 << 20) else {
                throw ConfigError("\(origin): cannot read '\(path)' (missing, unreadable, or over 1 MiB)")
            }
            try addObject("\(origin) \(path)", text)
        }
        try addPairs("--handler", flags)
        return out
    }
}

import Logging
import Shared

/// Every setting of spool-worker, resolved once at start (flag, then env, then default).
struct WorkerConfig {
    var queues = ["default"]
    var concurrency = 8
    /// Job type → shell command.
    var commands: [String: String] = [:]
    var redis = RedisEndpoint()
    var prefix = "spool"
    var leaseMs: Int64 = 30_000
    var heartbeatMs: Int64 = 5_000
    var shutdownGraceMs: Int64 = 25_000
    var childLimits = ChildProcess.Limits()
    var deadTTLSeconds: Int64 = 604_800
    var deadMax = 10_000
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
    init(_ o: WorkerOptions, source: SettingSource = SettingSource()) throws {
        let queueText = source.string(o.queues, flagName: "--queues", env: "SPOOL_QUEUES", default: "default")
        queues = queueText.split(separator: ",").map { String($0).trimmingCharacters(in: " ") }
        let queueOrigin = o.queues != nil ? "--queues" : "SPOOL_QUEUES"
        guard !queues.isEmpty else { throw ConfigError("\(queueOrigin): give at least one queue") }
        for q in queues where !Validation.isValidQueueName(q) {
            throw ConfigError("\(queueOrigin): queue '\(q)' must match [A-Za-z0-9_.-]{1,64}")
        }
        guard Set(queues).count == queues.count else { throw ConfigError("\(queueOrigin): a queue is named twice") }
        concurrency = Int(try source.integer(o.concurrency, flagName: "--concurrency", env: "SPOOL_CONCURRENCY",
                                             default: 8, range: 1...1024))
        commands = try WorkerConfig.parseHandlers(o.handler, env: source.raw(flag: nil, flagName: "", env: "SPOOL_HANDLERS")?.value,
                                                  json: source.raw(flag: nil, flagName: "", env: "SPOOL_HANDLERS_JSON")?.value,
                                                  file: source.raw(flag: o.handlersFile, flagName: "--handlers-file", env: "SPOOL_HANDLERS_FILE"))
        redis = try source.redisEndpoint(o.redisURL)
        prefix = try source.prefix(o.prefix)
        leaseMs = try source.integer(o.leaseMs, flagName: "--lease-ms", env: "SPOOL_LEASE_MS",
                                     default: 30_000, range: 1000...86_400_000, unit: "milliseconds")
        heartbeatMs = try source.integer(o.heartbeatMs, flagName: "--heartbeat-ms", env: "SPOOL_HEARTBEAT_MS",
                                         default: min(5000, leaseMs / 3), range: 100...3_600_000, unit: "milliseconds")
        let heartbeatOrigin = o.heartbeatMs != nil ? "--heartbeat-ms" : "SPOOL_HEARTBEAT_MS"
        let leaseOrigin = o.leaseMs != nil ? "--lease-ms" : "SPOOL_LEASE_MS"
        guard heartbeatMs * 2 < leaseMs else {
            throw ConfigError("\(heartbeatOrigin): \(heartbeatMs) ms must be below half the lease (\(leaseOrigin) \(leaseMs) ms), or leases expire between heartbeats")
        }
        shutdownGraceMs = try source.integer(o.shutdownGraceMs, flagName: "--shutdown-grace-ms", env: "SPOOL_SHUTDOWN_GRACE_MS",
                                             default: 25_000, range: 0...3_600_000, unit: "milliseconds")
        childLimits.killGraceMs = try source.integer(o.killGraceMs, flagName: "--kill-grace-ms", env: "SPOOL_KILL_GRACE_MS",
                                                     default: min(5000, leaseMs / 6), range: 0...600_000, unit: "milliseconds")
        childLimits.maxStdoutBytes = Int(try source.integer(o.maxOutputBytes, flagName: "--max-output-bytes", env: "SPOOL_MAX_OUTPUT_BYTES",
                                                            default: 1 << 20, range: 1024...(64 << 20), unit: "bytes"))
        deadTTLSeconds = try source.integer(o.deadTTL, flagName: "--dead-ttl-s", env: "SPOOL_DEAD_TTL_S",
                                            default: 604_800, range: 1...31_536_000, unit: "seconds")
        deadMax = Int(try source.integer(o.deadMax, flagName: "--dead-max", env: "SPOOL_DEAD_MAX",
                                         default: 10_000, range: 1...10_000_000))
        // A call stuck that long must leave time to renew a lease, and to stop
        // a job whose lease cannot be renewed before it expires (LeaseWatchdog).
        redisTimeoutMs = try source.integer(o.redisTimeoutMs, flagName: "--redis-timeout-ms", env: "SPOOL_REDIS_TIMEOUT_MS",
                                            default: min(5000, leaseMs / 4), range: 10...60_000, unit: "milliseconds")
        guard redisTimeoutMs * 3 <= leaseMs else {
            let origin = o.redisTimeoutMs != nil ? "--redis-timeout-ms" : "SPOOL_REDIS_TIMEOUT_MS"
            throw ConfigError("\(origin): \(redisTimeoutMs) ms must be at most a third of the lease (\(leaseOrigin) \(leaseMs) ms): "
                              + "a Redis call stuck that long must leave time to renew leases and to stop jobs whose lease cannot be renewed")
        }
        processes = Int(try source.integer(o.processes, flagName: "--processes", env: "SPOOL_PROCESSES", default: 1, range: 1...256))
        processIndex = source.raw(flag: nil, flagName: "", env: "SPOOL_PROCESS_INDEX").flatMap { Int($0.value) }
        siblingProcesses = source.raw(flag: nil, flagName: "", env: "SPOOL_PROCESS_COUNT").flatMap { Int($0.value) }
            .map { max(1, $0) } ?? 1
        if let (_, origin) = source.raw(flag: o.healthPort, flagName: "--health-port", env: "SPOOL_HEALTH_PORT") {
            healthPortOrigin = origin
            healthPort = Int(try source.integer(o.healthPort, flagName: "--health-port", env: "SPOOL_HEALTH_PORT",
                                                default: 0, range: 1...65535))
        }
        logLevel = try source.logLevel(o.logLevel)
        logFormat = try source.choice(o.logFormat, flagName: "--log-format", env: "SPOOL_LOG_FORMAT", default: LogSetup.defaultFormat)
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

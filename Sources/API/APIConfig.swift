#if canImport(Glibc)
import Glibc
#endif
import Logging
import Shared

/// Every setting of spool-api, resolved once at start (flag, then env, then default).
struct APIConfig {
    var address = ListenAddress(host: "127.0.0.1", port: 8080)
    /// The setting the address came from (`--addr` or SPOOL_API_ADDR), for errors.
    var addressOrigin = "SPOOL_API_ADDR"
    var redis = RedisEndpoint()
    var prefix = "spool"
    /// Event loops (threads), each with its own listening socket and Redis connection.
    var threads = 2
    /// A Redis command that takes longer fails the request with 503 (ms).
    var redisTimeoutMs: Int64 = 2000
    var httpLimits = HTTPLimits()
    /// Pending jobs per queue above which enqueue answers 429 (0 = no limit).
    var maxPending: Int64 = 0
    /// Limits for particular queues, overriding `maxPending`.
    var queueMaxPending: [String: Int64] = [:]
    /// Options of a job that its enqueue request does not set.
    var jobDefaults = JobOptions()
    /// Known queues at most; an enqueue that would create one more answers 409.
    var maxQueues: Int64 = 1000
    /// Queues that get per-queue series in /metrics (the deepest first).
    var metricsMaxQueues = 200
    /// One JSON line per answered request.
    var accessLog = false
    /// After SIGTERM: time the listener stays open while /readyz answers 503,
    /// so a load balancer stops sending new requests here (ms).
    var drainMs: Int64 = 2000
    /// After SIGTERM: time in all until the process exits, answering what is in flight (ms).
    var shutdownGraceMs: Int64 = 10_000
    var logLevel: Logger.Level = .info
    var logFormat: LogSetup.Format = .json
}

extension APIConfig {
    init(_ o: APIOptions, source: SettingSource = SettingSource()) throws {
        let addr = source.string(o.addr, flagName: "--addr", env: "SPOOL_API_ADDR", default: "127.0.0.1:8080")
        addressOrigin = o.addr != nil ? "--addr" : "SPOOL_API_ADDR"
        guard let address = ListenAddress(parsing: addr) else {
            throw ConfigError("\(addressOrigin): '\(addr)' is not host:port")
        }
        self.address = address
        redis = try source.redisEndpoint(o.redisURL)
        prefix = try source.prefix(o.prefix)
        threads = Int(try source.integer(o.threads, flagName: "--threads", env: "SPOOL_API_THREADS",
                                         default: Int64(APIConfig.cores), range: 1...64))
        redisTimeoutMs = try source.integer(o.redisTimeoutMs, flagName: "--redis-timeout-ms", env: "SPOOL_REDIS_TIMEOUT_MS",
                                            default: 2000, range: 10...60_000, unit: "milliseconds")
        httpLimits.maxBodyBytes = Int(try source.integer(o.maxBodyBytes, flagName: "--max-body-bytes", env: "SPOOL_MAX_BODY_BYTES",
                                                         default: 1 << 20, range: 1024...(64 << 20), unit: "bytes"))
        httpLimits.readTimeoutMs = Int(try source.integer(o.readTimeoutMs, flagName: "--read-timeout-ms", env: "SPOOL_HTTP_READ_TIMEOUT_MS",
                                                          default: 10_000, range: 100...600_000, unit: "milliseconds"))
        httpLimits.writeTimeoutMs = Int(try source.integer(o.writeTimeoutMs, flagName: "--write-timeout-ms", env: "SPOOL_HTTP_WRITE_TIMEOUT_MS",
                                                           default: 10_000, range: 100...600_000, unit: "milliseconds"))
        let maxConnections = try source.integer(o.maxConnections, flagName: "--max-connections", env: "SPOOL_MAX_CONNECTIONS",
                                                default: 10_000, range: 1...1_000_000)
        httpLimits.maxConnectionsPerLoop = max(1, Int(maxConnections) / threads)
        maxPending = try source.integer(o.maxPending, flagName: "--max-pending", env: "SPOOL_MAX_PENDING",
                                        default: 0, range: 0...Int64(Int32.max))
        queueMaxPending = try APIConfig.parseQueueLimits(
            source.raw(flag: o.queueMaxPending, flagName: "--queue-max-pending", env: "SPOOL_QUEUE_MAX_PENDING"))
        jobDefaults.resultTTLSeconds = try source.integer(o.resultTTL, flagName: "--result-ttl-s", env: "SPOOL_RESULT_TTL_S",
                                                          default: 86400, range: EnqueueRequest.resultTTLSeconds, unit: "seconds")
        maxQueues = try source.integer(o.maxQueues, flagName: "--max-queues", env: "SPOOL_MAX_QUEUES",
                                       default: 1000, range: 1...1_000_000)
        metricsMaxQueues = Int(try source.integer(o.metricsMaxQueues, flagName: "--metrics-max-queues", env: "SPOOL_METRICS_MAX_QUEUES",
                                                  default: 200, range: 0...100_000))
        accessLog = try source.boolean(o.accessLog, flagName: "--access-log", env: "SPOOL_ACCESS_LOG", default: false)
        drainMs = try source.integer(o.drainMs, flagName: "--drain-ms", env: "SPOOL_API_DRAIN_MS",
                                     default: 2000, range: 0...600_000, unit: "milliseconds")
        shutdownGraceMs = try source.integer(o.shutdownGraceMs, flagName: "--shutdown-grace-ms", env: "SPOOL_API_SHUTDOWN_GRACE_MS",
                                             default: 10_000, range: 0...3_600_000, unit: "milliseconds")
        let graceOrigin = o.shutdownGraceMs != nil ? "--shutdown-grace-ms" : "SPOOL_API_SHUTDOWN_GRACE_MS"
        let drainOrigin = o.drainMs != nil ? "--drain-ms" : "SPOOL_API_DRAIN_MS"
        guard shutdownGraceMs >= drainMs else {
            throw ConfigError("\(graceOrigin): \(shutdownGraceMs) ms must be at least \(drainOrigin) (\(drainMs) ms): "
                              + "the grace period includes the drain")
        }
        logLevel = try source.logLevel(o.logLevel)
        logFormat = try source.choice(o.logFormat, flagName: "--log-format", env: "SPOOL_LOG_FORMAT", default: LogSetup.defaultFormat)
    }

    func pendingLimit(for queue: String) -> Int64 { queueMaxPending[queue] ?? maxPending }

    /// `queue=limit,queue=limit`, e.g. `emails=10000,reports=50`.
    static func parseQueueLimits(_ setting: (value: String, origin: String)?) throws -> [String: Int64] {
        guard let (text, origin) = setting else { return [:] }
        var out: [String: Int64] = [:]
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).trimmingCharacters(in: " ") }
            guard parts.count == 2, Validation.isValidQueueName(parts[0]), let n = Int64(parts[1]), n >= 0 else {
                throw ConfigError("\(origin): '\(pair)' must be queue=limit, with a whole number limit ≥ 0")
            }
            out[parts[0]] = n
        }
        return out
    }

    static var cores: Int {
        #if canImport(Glibc)
        return max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        #else
        return 2
        #endif
    }
}

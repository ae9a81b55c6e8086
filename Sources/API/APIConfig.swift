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
    /// The auth file (SPOOL_AUTH_FILE); nil: no authentication (see `authMode`).
    var authFile: String?
    /// HTTPS: the PEM certificate chain and key (both or neither).
    var tlsCertificate: String?
    var tlsKey: String?
    /// One JSON line per answered request.
    var accessLog = false
    /// Replicas that must acknowledge a client's write before it is answered
    /// (0: none, no WAIT), and how long to wait for them.
    var minReplicas = 0
    /// Event streams: the idle comment interval, and unsent bytes before a slow client is cut off.
    var streamKeepaliveMs: Int64 = 15_000
    var streamMaxBufferedBytes = 1 << 20
    var replicaAckTimeoutMs: Int64 = 1000
    /// After SIGTERM: time the listener stays open while /readyz answers 503,
    /// so a load balancer stops sending new requests here (ms).
    var drainMs: Int64 = 2000
    /// After SIGTERM: time in all until the process exits, answering what is in flight (ms).
    var shutdownGraceMs: Int64 = 10_000
    var logLevel: Logger.Level = .info
    var logFormat: LogSetup.Format = .json
}

extension APIConfig {
    init(_ source: SettingSource) throws {
        typealias S = APISettings
        let addr = source.string(S.addr, default: "127.0.0.1:8080")
        addressOrigin = source.origin(S.addr)
        guard let address = ListenAddress(parsing: addr) else {
            throw ConfigError("\(addressOrigin): '\(addr)' is not host:port")
        }
        self.address = address
        redis = try source.redisEndpoint()
        prefix = try source.prefix()
        threads = Int(try source.integer(S.threads, default: Int64(APIConfig.cores)))
        redisTimeoutMs = try source.integer(S.redisTimeoutMs, default: 2000)
        httpLimits.maxBodyBytes = Int(try source.integer(S.maxBodyBytes, default: 1 << 20))
        httpLimits.readTimeoutMs = Int(try source.integer(S.readTimeoutMs, default: 10_000))
        httpLimits.writeTimeoutMs = Int(try source.integer(S.writeTimeoutMs, default: 10_000))
        let maxConnections = try source.integer(S.maxConnections, default: 10_000)
        httpLimits.maxConnectionsPerLoop = max(1, Int(maxConnections) / threads)
        maxPending = try source.integer(S.maxPending, default: 0)
        queueMaxPending = try APIConfig.parseQueueLimits(source.raw(S.queueMaxPending))
        jobDefaults.resultTTLSeconds = try source.integer(S.resultTTL, default: 86400)
        maxQueues = try source.integer(S.maxQueues, default: 1000)
        metricsMaxQueues = Int(try source.integer(S.metricsMaxQueues, default: 200))
        authFile = try APIConfig.authFile(source, address: address, addressOrigin: addressOrigin)
        tlsCertificate = source.raw(S.tlsCert).map(\.value).flatMap { $0.isEmpty ? nil : $0 }
        tlsKey = source.raw(S.tlsKey).map(\.value).flatMap { $0.isEmpty ? nil : $0 }
        guard (tlsCertificate == nil) == (tlsKey == nil) else {
            let given = tlsCertificate == nil ? source.origin(S.tlsKey) : source.origin(S.tlsCert)
            let missing = tlsCertificate == nil ? S.tlsCert : S.tlsKey
            throw ConfigError("\(given) is set without \(missing.env) (\(missing.flagName)): HTTPS needs the certificate and its key")
        }
        accessLog = try source.boolean(S.accessLog, default: false)
        streamKeepaliveMs = try source.integer(S.streamKeepalive, default: 15) * 1000
        streamMaxBufferedBytes = Int(try source.integer(S.streamMaxBuffered, default: 1 << 20))
        minReplicas = Int(try source.integer(S.minReplicas, default: 0))
        replicaAckTimeoutMs = try source.integer(S.replicaAckTimeoutMs, default: 1000)
        // WAIT holds the connection that long: past the command timeout the
        // write would be reported as a Redis failure, not as unreplicated.
        guard minReplicas == 0 || replicaAckTimeoutMs < redisTimeoutMs else {
            throw ConfigError("\(source.origin(S.replicaAckTimeoutMs)): \(replicaAckTimeoutMs) ms must be below "
                              + "\(source.origin(S.redisTimeoutMs)) (\(redisTimeoutMs) ms): the wait for replicas runs within it")
        }
        drainMs = try source.integer(S.drainMs, default: 2000)
        shutdownGraceMs = try source.integer(S.shutdownGraceMs, default: 10_000)
        guard shutdownGraceMs >= drainMs else {
            throw ConfigError("\(source.origin(S.shutdownGraceMs)): \(shutdownGraceMs) ms must be at least "
                              + "\(source.origin(S.drainMs)) (\(drainMs) ms): the grace period includes the drain")
        }
        logLevel = try source.logLevel()
        logFormat = try source.logFormat()
    }

    /// The auth file to use, or nil for none. Secure by default, like Redis'
    /// protected mode: an API reachable from other machines (not on a
    /// loopback address) without an auth file refuses to start, unless
    /// `SPOOL_AUTH=none` says that is meant.
    static func authFile(_ source: SettingSource, address: ListenAddress, addressOrigin: String) throws -> String? {
        typealias S = APISettings
        let file = source.raw(S.authFile).map(\.value).flatMap { $0.isEmpty ? nil : $0 }
        let mode = source.string(S.authMode, default: "auto")
        switch mode {
        case "none":
            guard file == nil else {
                throw ConfigError("\(source.origin(S.authMode))=none and \(source.origin(S.authFile)) contradict each other; drop one")
            }
            return nil
        case "tokens":
            guard let file else {
                throw ConfigError("\(source.origin(S.authMode))=tokens needs \(S.authFile.env) (or --auth-file): the JSON file of API clients")
            }
            return file
        case "auto":
            if file == nil && !address.isLoopback {
                throw ConfigError("\(addressOrigin)=\(address) is reachable from other machines, and no auth file is set: "
                                  + "anyone who can connect could enqueue jobs and read every result. Set \(S.authFile.env) "
                                  + "(spool-api token makes entries), or \(S.authMode.env)=none if the network in front is trusted")
            }
            return file
        default:
            throw ConfigError("\(source.origin(S.authMode)): '\(mode.prefix(40))' must be auto, tokens or none")
        }
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

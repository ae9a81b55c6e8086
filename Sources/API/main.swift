import Logging
import Shared
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// spool-api: read the config, start one event loop per thread, serve until
// SIGTERM/SIGINT, then shut down gracefully (see `shutDown`).

if CommandLine.arguments.count > 1 && CommandLine.arguments[1] == "token" {
    TokenCommand.run(Array(CommandLine.arguments.dropFirst(2)))
}
let flags = CommandLineOptions.parseOrExit(program: "spool-api", abstract: "Spool HTTP API: enqueues jobs and reads their state.",
                                           settings: APISettings.all, own: APISettings.own)
let source = SettingSource(flags: flags)
let config: APIConfig
do {
    config = try APIConfig(source)
} catch {
    FileOutput.stderr("spool-api: \(error)")
    exit(2)
}

LogSetup.bootstrap(service: "api", level: config.logLevel, format: config.logFormat)
// TLS to Redis and encryption at rest (a bad certificate or key file stops here).
StartupSecurity.prepare(source, redis: config.redis, program: "spool-api")
MetricsSetup.bootstrap()
APIMetrics.bootstrap()
let logger = Logger(label: "spool.api")
Signals.blockTerminationSignals(andHangup: true)
LibeventLoop.enableThreads()

// Authentication: the auth file's clients, read again on change and SIGHUP.
let auth: AuthStore?
do {
    auth = try config.authFile.map { try AuthStore(path: $0, logger: logger) }
} catch {
    FileOutput.stderr("spool-api: SPOOL_AUTH_FILE \(error)")
    exit(2)
}
// HTTPS: the certificate and key, read again on change and SIGHUP.
let tls: TLSServerContext?
do {
    tls = try config.tlsCertificate.map { try TLSServerContext(certificate: $0, key: config.tlsKey ?? "") }
} catch {
    FileOutput.stderr("spool-api: SPOOL_TLS_CERT / SPOOL_TLS_KEY: \(error)")
    exit(2)
}
// Every second: files changed (a Secret or certificate rotated) are read again.
let reloadWatch = (auth != nil || tls != nil) ? BackgroundThread(name: "spool-api-reload") {
    while true {
        Clock.sleep(milliseconds: 1000)
        auth?.reloadIfChanged()
        tls?.reloadIfChanged(logger: logger)
    }
} : nil
if config.authFile == nil {
    logger.warning("authentication is off: anyone who can reach this address may enqueue jobs and read every result",
                   metadata: ["addr": "\(config.address)"])
}

let problems = RedisProblemLog(logger: logger)
let serverErrors = ServerErrorLog(logger: logger)
var loops: [EventLoop] = []
do {
    for index in 0..<config.threads {
        loops.append(try EventLoop(index: index, config: config, auth: auth, tls: tls, logger: logger, problems: problems,
                                   serverErrors: serverErrors))
    }
} catch {
    FileOutput.stderr("spool-api: \(error)")
    exit(2)
}

// On Redis Cluster: keep the slot map fresh (see ClusterTopology).
let clusterWatch = ClusterTopology.startWatch(config.redis, logger: logger)
let threads = loops.map { loop in BackgroundThread(name: "spool-api-loop") { loop.run() } }
logger.info("spool-api listening", metadata: [
    "addr": "\(config.address.host):\(loops[0].listener.boundPort)", "threads": .stringConvertible(config.threads),
    "redis": "\(config.redis)", "prefix": "\(config.prefix)",
    "auth": "\(auth.map { "\($0.current.clients.count) clients from \($0.path)" } ?? "off")",
    "scheme": "\(tls == nil ? "http" : "https")",
])
StartupChecks.warnAboutEviction(config.redis, logger: logger)
// Behind Sentinel: follow its failovers (see SentinelWatch).
let sentinelWatch = SentinelWatch.start(config.redis, logger: logger)


/// Graceful shutdown, in the order a load balancer needs:
/// 1. `/readyz` answers 503 at once, while everything else is served as
///    usual for `SPOOL_API_DRAIN_MS`, so the balancer takes this process out;
/// 2. the listeners close; every waiting long-poll is answered 200 with its
///    job's current state; idle keep-alive connections close, busy ones after
///    their response;
/// 3. the process exits 0 once every connection is closed, or when
///    `SPOOL_API_SHUTDOWN_GRACE_MS` (counted from the signal) runs out.
@MainActor
func shutDown(signal: String) -> Never {
    let started = Clock.monotonicMillis()
    let deadline = started + config.shutdownGraceMs
    logger.info("spool-api stopping: /readyz answers 503 while requests drain", metadata: [
        "signal": "\(signal)", "drain_ms": .stringConvertible(config.drainMs),
        "grace_ms": .stringConvertible(config.shutdownGraceMs),
    ])
    Router.draining.store(true, ordering: .releasing)
    Clock.sleep(milliseconds: config.drainMs)
    for loop in loops { loop.perform { loop.closeForShutdown() } }
    var open = 0
    while Clock.monotonicMillis() < deadline {
        open = loops.reduce(0) { $0 + $1.listener.connectionCount }
        if open == 0 { break }
        Clock.sleep(milliseconds: 20)
    }
    for loop in loops { loop.stop() }
    for t in threads { t.join(timeoutMs: 2000) }
    logger.info("spool-api stopped", metadata: [
        "took_ms": .stringConvertible(Clock.monotonicMillis() - started), "connections_left": .stringConvertible(open),
    ])
    TLSRelay.shared.removeSockets()
    exit(0)
}

// SIGHUP re-reads the auth file (and, with TLS, the certificate).
let signal = Signals.waitForTermination(onHangup: {
    auth?.reload(reason: "SIGHUP")
    tls?.reload(reason: "SIGHUP", logger: logger)
})
shutDown(signal: signal)

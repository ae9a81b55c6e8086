import CLibevent
import Logging
import Shared
#if canImport(Glibc)
import Glibc
#endif

// spool-api: read the config, start one event loop per thread, serve until
// SIGTERM/SIGINT, then stop accepting, give in-flight requests a moment, exit.

let options = APIOptions.parseOrExit()
let config: APIConfig
do {
    config = try APIConfig(options)
} catch {
    FileOutput.stderr("spool-api: \(error)")
    exit(2)
}

LogSetup.bootstrap(service: "api", level: config.logLevel, format: config.logFormat)
MetricsSetup.bootstrap()
let logger = Logger(label: "spool.api")
Signals.blockTerminationSignals()
evthread_use_pthreads()

var loops: [EventLoop] = []
do {
    for _ in 0..<config.threads { loops.append(try EventLoop(config: config, logger: logger)) }
} catch {
    FileOutput.stderr("spool-api: \(error)")
    exit(2)
}

let threads = loops.map { loop in BackgroundThread(name: "spool-api-loop") { loop.run() } }
logger.info("spool-api listening", metadata: [
    "addr": "\(config.address.host):\(loops[0].listener.boundPort)", "threads": .stringConvertible(config.threads),
    "redis": "\(config.redis)", "prefix": "\(config.prefix)",
])

let signal = Signals.waitForTermination()
logger.info("spool-api stopping", metadata: ["signal": "\(signal)"])
for loop in loops { loop.stopAccepting() }
// Requests already read get a short while to receive their Redis reply.
Clock.sleep(milliseconds: 300)
for loop in loops { loop.stop() }
for t in threads { t.join(timeoutMs: 2000) }
logger.info("spool-api stopped")
exit(0)

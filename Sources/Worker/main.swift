import Logging
import Shared
#if canImport(Glibc)
import Glibc
#endif

// spool-worker: read the config, start the loops, run until SIGTERM/SIGINT,
// then drain and stop in order (see WorkerProcess).

let flags = CommandLineOptions.parseOrExit(program: "spool-worker", abstract: "Spool worker: runs jobs from Redis queues.",
                                           settings: WorkerSettings.all, own: WorkerSettings.own)
let config: WorkerConfig
do {
    config = try WorkerConfig(SettingSource(flags: flags))
} catch {
    FileOutput.stderr("spool-worker: \(error)")
    exit(2)
}

LogSetup.bootstrap(service: "worker", level: config.logLevel, format: config.logFormat)
// rediss://: a certificate that will never be trusted stops the start, with the reason.
do {
    try RedisTLS.checkAtStart(config.redis)
} catch {
    FileOutput.stderr("spool-worker: \(error)")
    exit(2)
}
TLSRelay.shared.logger = Logger(label: "spool.tls")
// Encryption at rest: payloads opened here, results, errors and progress sealed here.
do {
    FieldCipher.shared = try SettingSource(flags: flags).fieldCipher()
} catch {
    FileOutput.stderr("spool-worker: \(error)")
    exit(2)
}
MetricsSetup.bootstrap()
Signals.blockTerminationSignals()
if config.processes > 1 {
    exit(Supervisor(processes: config.processes, shutdownGraceMs: config.shutdownGraceMs, logger: Logger(label: "spool.supervisor")).run())
}
let process: WorkerProcess
do {
    process = try WorkerProcess(config: config, logger: Logger(label: "spool.worker"))
} catch {
    FileOutput.stderr("spool-worker: \(error)")
    exit(2)
}
process.start()
let signal = Signals.waitForTermination()
process.worker.logger.info("signal received", metadata: ["signal": "\(signal)", "worker_id": "\(process.worker.id)"])
process.shutdown()
TLSRelay.shared.removeSockets()
exit(0)

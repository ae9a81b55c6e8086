import Logging
import Shared
#if canImport(Glibc)
import Glibc
#endif

// spool-worker: read the config, start the loops, run until SIGTERM/SIGINT,
// then drain and stop in order (see WorkerProcess).

let flags = CommandLineOptions.parseOrExit(program: "spool-worker", abstract: "Spool worker: runs jobs from Redis queues.",
                                           settings: WorkerSettings.all, own: WorkerSettings.own)
let source = SettingSource(flags: flags)
let config: WorkerConfig
do {
    config = try WorkerConfig(source)
} catch {
    FileOutput.stderr("spool-worker: \(error)")
    exit(2)
}

LogSetup.bootstrap(service: "worker", level: config.logLevel, format: config.logFormat)
// TLS to Redis and encryption at rest (a bad certificate or key file stops here).
StartupSecurity.prepare(source, redis: config.redis, program: "spool-worker")
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

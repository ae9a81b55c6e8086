import Logging
import Shared

/// One worker process: wires the control loop and the fetch loops, and stops
/// them in order.
///
/// Shutdown order, and why:
/// 1. stop fetching — no new work is taken from here on;
/// 2. wait up to the grace period for running jobs to finish — the control
///    loop keeps heartbeating meanwhile, so their leases stay valid;
/// 3. stop the handlers still running, then give their jobs back to the head
///    of their pending lists — in this order, so a job never runs here and
///    elsewhere at once, and nothing waits for a lease to expire;
/// 4. stop the control loop and leave the worker registry.
final class WorkerProcess {
    let worker: WorkerContext
    private let control: ControlLoop
    private let watchdog: LeaseWatchdog
    private var fetchThreads: [BackgroundThread] = []
    private var controlThread: BackgroundThread?
    private var watchdogThread: BackgroundThread?
    private var health: HealthServer?
    private let reaper: HandlerReaper?
    /// Their idle processes are ended at shutdown.
    private let persistentHandlers: [PersistentHandler]

    init(config: WorkerConfig, logger: Logger) throws {
        var handlers = BuiltinHandlers.all()
        let env = SettingSource.processEnvironment().map { "\($0.key)=\($0.value)" }
        reaper = config.commands.isEmpty ? nil : HandlerReaper()
        var persistent: [PersistentHandler] = []
        for (type, spec) in config.commands {
            switch try HandlerSpec(spec) {
            case .command(let command):
                handlers[type] = CommandHandler(command: command, limits: config.childLimits, reaper: reaper, baseEnvironment: env)
            case .persistent(let command):
                let handler = PersistentHandler(command: command, limits: config.childLimits, settings: config.persistent,
                                                reaper: reaper, baseEnvironment: env, logger: logger)
                persistent.append(handler)
                handlers[type] = handler
            case .http(let target):
                handlers[type] = HTTPJobHandler(target: target, limits: config.childLimits)
            }
        }
        persistentHandlers = persistent
        worker = WorkerContext(id: WorkerIdentity.newID(index: config.processIndex), config: config, handlers: handlers, logger: logger)
        control = ControlLoop(worker: worker)
        watchdog = LeaseWatchdog(worker: worker)
        WorkerMetrics.bootstrap(queues: config.queues, types: handlers.keys.sorted())
        // Under a supervisor, child i serves on port + i.
        if let port = config.healthPort { health = try HealthServer(worker: worker, port: port + (config.processIndex ?? 0)) }
    }

    private var sentinelWatch: SentinelWatch?

    private var clusterThreads: [BackgroundThread] = []

    func start() {
        health?.start()
        // On Redis Cluster: keep the slot map fresh (ClusterTopology), and
        // listen for each queue's new jobs (ClusterWakeBoard).
        if let watch = ClusterTopology.startWatch(worker.config.redis, logger: worker.logger) { clusterThreads.append(watch) }
        if let board = worker.clusterWake {
            for queue in worker.config.queues {
                let listener = ClusterWakeListener(worker: worker, board: board, queue: queue)
                clusterThreads.append(BackgroundThread(name: "spool-wake") { listener.run() })
            }
        }
        let control = self.control
        controlThread = BackgroundThread(name: "spool-control") { control.run() }
        let watchdog = self.watchdog
        watchdogThread = BackgroundThread(name: "spool-lease-watch") { watchdog.run() }
        for index in 0..<worker.config.concurrency {
            let loop = FetchLoop(worker: worker, index: index)
            fetchThreads.append(BackgroundThread(name: "spool-fetch") { loop.run() })
        }
        worker.logger.info("spool-worker started", metadata: [
            "worker_id": "\(worker.id)", "queues": "\(worker.config.queues.joined(separator: ","))",
            "concurrency": .stringConvertible(worker.config.concurrency), "redis": "\(worker.config.redis)",
            "handlers": "\(worker.handlers.keys.sorted().joined(separator: ","))", "version": "\(SpoolVersion.current)",
        ])
        StartupChecks.warnAboutEviction(worker.config.redis, logger: worker.logger)
        // Behind Sentinel: follow its failovers (see SentinelWatch).
        sentinelWatch = SentinelWatch.start(worker.config.redis, logger: worker.logger)
    }

    func shutdown() {
        let log = worker.logger
        worker.stopFetching.set()
        let running = worker.running.count
        log.info("shutting down: no new jobs; waiting for running ones", metadata: [
            "worker_id": "\(worker.id)", "running": .stringConvertible(running),
            "grace_ms": .stringConvertible(worker.config.shutdownGraceMs),
        ])
        let deadline = Clock.monotonicMillis() + worker.config.shutdownGraceMs
        for t in fetchThreads { t.join(timeoutMs: max(0, deadline - Clock.monotonicMillis())) }

        let leftovers = worker.running.byQueue
        if !leftovers.isEmpty {
            // Interrupted jobs are not reported (their leases stay held), so
            // they can be given back once their handlers are gone.
            worker.running.stopAll(.shutdown)
            for t in fetchThreads { t.join(timeoutMs: 2000) }
            bounded("give back unfinished jobs", ms: worker.config.redisTimeoutMs * 2) { self.giveBack(leftovers) }
        }
        control.stop()
        controlThread?.join(timeoutMs: worker.config.redisTimeoutMs * 4 + 1000)
        watchdog.stop()
        watchdogThread?.join(timeoutMs: 1000)
        bounded("deregister", ms: worker.config.redisTimeoutMs) { self.deregister() }
        for h in persistentHandlers { h.shutdown() }
        reaper?.stop()
        log.info("spool-worker stopped", metadata: ["worker_id": "\(worker.id)", "processed": .stringConvertible(worker.counters.processed),
                                                    "failed": .stringConvertible(worker.counters.failed)])
    }

    /// Leaves the registry on a connection of its own: the control loop's may
    /// still be in use if its last tick has not returned.
    /// Runs a shutdown step that needs Redis on a thread of its own, and waits
    /// for it at most `ms`. Why: opening a connection resolves the Redis host
    /// name, and getaddrinfo retries on its own clock, past every timeout of
    /// ours (seen in a container whose DNS stopped answering at shutdown: the
    /// worker hung in deregistering until the runtime killed it). A step cut
    /// short costs little: jobs not given back return when their lease
    /// expires, and the registry entry expires without heartbeats.
    private func bounded(_ step: String, ms: Int64, _ body: @escaping () -> Void) {
        let thread = BackgroundThread(name: "spool-shutdown", body)
        if !thread.join(timeoutMs: ms) {
            worker.logger.warning("shutdown step cut short: Redis did not answer in time", metadata: [
                "step": "\(step)", "waited_ms": .stringConvertible(ms), "worker_id": "\(worker.id)"])
        }
    }

    private func deregister() {
        let redis = worker.newConnection()
        _ = try? redis.pipeline([["ZREM", worker.schema.workers, worker.id], ["DEL", worker.schema.worker(worker.id)]])
    }

    private func giveBack(_ jobs: [String: [(JobID, Int)]]) {
        let redis = worker.newConnection()
        for (queue, list) in jobs {
            do {
                let returned = try redis.run(GiveBackCall(schema: worker.schema, queue: queue, workerID: worker.id, jobs: list))
                for id in returned {
                    worker.logger.warning("job not finished within the shutdown grace period; given back to its queue",
                                          metadata: ["job_id": "\(id)", "queue": "\(queue)", "worker_id": "\(worker.id)"])
                }
            } catch {
                worker.logger.error("could not give jobs back; they return when their lease expires",
                                    metadata: ["queue": "\(queue)", "error": "\(error)", "worker_id": "\(worker.id)"])
            }
        }
    }
}

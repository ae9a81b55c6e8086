import Logging
import Shared
#if canImport(Glibc)
import Glibc
#endif

/// `spool-worker --processes P`: runs P worker processes (this same binary
/// with `--processes 1`) and keeps them running:
/// - a child that exits is started again after a short delay, doubling while
///   it keeps dying young (so a crash loop does not spin), reset once it ran
///   for a minute;
/// - SIGTERM/SIGINT are forwarded to every child; the supervisor waits for
///   them (each drains within its own grace period), then exits 0.
/// Children share nothing but Redis, like workers on different hosts.
final class Supervisor {
    struct Child {
        var pid: pid_t = 0
        var startedAt: Int64 = 0
        var failures = 0
        var restartAt: Int64?
    }

    static let firstRestartDelayMs: Int64 = 500
    static let maxRestartDelayMs: Int64 = 30_000
    /// A child that ran this long counts as healthy: its next restart is quick again.
    static let healthyRunMs: Int64 = 60_000

    private let count: Int
    private let shutdownGraceMs: Int64
    private let logger: Logger
    private var children: [Child]

    init(processes: Int, shutdownGraceMs: Int64, logger: Logger) {
        self.count = processes
        self.shutdownGraceMs = shutdownGraceMs
        self.logger = logger
        self.children = Array(repeating: Child(), count: processes)
    }

    /// Runs until SIGTERM/SIGINT and all children are gone; returns the exit code.
    func run() -> Int32 {
        for i in 0..<count { start(i) }
        logger.info("supervisor started", metadata: ["processes": .stringConvertible(count), "pid": .stringConvertible(Int(getpid()))])
        while true {
            if let sig = Signals.waitForTermination(timeoutMs: 100) { return stop(signal: sig) }
            reapAndRestart()
        }
    }

    private func start(_ i: Int) {
        var args = CommandLine.arguments
        args[0] = Spawn.executablePath
        args += ["--processes", "1"]
        let env = SettingSource.processEnvironment().filter { $0.key != "SPOOL_PROCESS_INDEX" && $0.key != "SPOOL_PROCESS_COUNT" }
            .map { "\($0.key)=\($0.value)" } + ["SPOOL_PROCESS_INDEX=\(i)", "SPOOL_PROCESS_COUNT=\(count)"]
        // The child takes termination signals itself (Spawn empties the mask
        // the supervisor blocks them with).
        let started = Result { try Spawn.start(args[0], arguments: args, environment: env) }
        let now = Clock.monotonicMillis()
        guard case .success(let pid) = started else {
            if case .failure(let error) = started {
                logger.error("could not start worker process", metadata: ["index": .stringConvertible(i), "error": "\(error)"])
            }
            scheduleRestart(i, now: now)
            return
        }
        children[i].pid = pid
        children[i].startedAt = now
        children[i].restartAt = nil
        logger.info("worker process started", metadata: ["index": .stringConvertible(i), "pid": .stringConvertible(Int(pid))])
    }

    private func reapAndRestart() {
        while let (pid, status) = ExitStatus.ended(-1) {
            guard let i = children.firstIndex(where: { $0.pid == pid }) else { continue }
            children[i].pid = 0
            let now = Clock.monotonicMillis()
            let ranMs = now - children[i].startedAt
            logger.error("worker process exited; restarting", metadata: [
                "index": .stringConvertible(i), "pid": .stringConvertible(Int(pid)), "status": "\(status)",
                "ran_ms": .stringConvertible(ranMs),
            ])
            if ranMs >= Supervisor.healthyRunMs { children[i].failures = 0 }
            scheduleRestart(i, now: now)
        }
        let now = Clock.monotonicMillis()
        for i in children.indices where children[i].pid == 0 {
            if let at = children[i].restartAt, at <= now { start(i) }
        }
    }

    private func scheduleRestart(_ i: Int, now: Int64) {
        let shift = min(children[i].failures, 10)
        let delay = min(Supervisor.maxRestartDelayMs, Supervisor.firstRestartDelayMs << shift)
        children[i].failures += 1
        children[i].restartAt = now + delay
    }

    private func stop(signal: Int32) -> Int32 {
        logger.info("supervisor stopping; forwarding the signal to worker processes", metadata: ["signal": .stringConvertible(Int(signal))])
        for c in children where c.pid > 0 { kill(c.pid, SIGTERM) }
        // Each child drains within its own grace; past that (plus slack) it is killed.
        let deadline = Clock.monotonicMillis() + shutdownGraceMs + 10_000
        while children.contains(where: { $0.pid > 0 }) {
            if let (pid, _) = ExitStatus.ended(-1), let i = children.firstIndex(where: { $0.pid == pid }) {
                children[i].pid = 0
                continue
            }
            if Clock.monotonicMillis() > deadline {
                for c in children where c.pid > 0 { kill(c.pid, SIGKILL) }
            }
            Clock.sleep(milliseconds: 50)
        }
        logger.info("supervisor stopped")
        return 0
    }
}

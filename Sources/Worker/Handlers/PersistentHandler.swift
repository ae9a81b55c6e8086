import Logging
import Shared

/// A job type served by long-lived processes (`--handler TYPE=persistent:COMMAND`):
/// code stays loaded (a model, a client, a JIT) instead of starting a process
/// per job. A pool per type, shared by the fetch loops: a loop takes an idle
/// process or starts one (lazily, so up to `--concurrency` of them), runs its
/// job on it (PersistentProcess) and puts it back. A process is
/// - recycled after `SPOOL_PERSISTENT_MAX_JOBS` jobs, or once its memory
///   passes `SPOOL_PERSISTENT_MAX_RSS_MB`: it gets EOF on stdin and the kill
///   grace to exit, on a thread of its own, while the next job starts a fresh one;
/// - dropped when it dies: its job fails and is retried, the next job starts
///   a new process;
/// - killed (its whole process group) when its job times out or is stopped.
final class PersistentHandler: JobHandler {
    struct Settings {
        var maxJobs = 1000
        /// 0: no memory limit.
        var maxResidentBytes: Int64 = 0
    }

    let command: String
    private let limits: ChildProcess.Limits
    private let settings: Settings
    private let reaper: HandlerReaper?
    private let environment: [String]
    private let logger: Logger
    private let lock = Lock()
    private var idle: [PersistentProcess] = []
    private var closed = false

    init(command: String, limits: ChildProcess.Limits, settings: Settings, reaper: HandlerReaper?, baseEnvironment: [String],
         logger: Logger) {
        self.command = command
        self.limits = limits
        self.settings = settings
        self.reaper = reaper
        environment = baseEnvironment.filter { !$0.hasPrefix("SPOOL_HANDLER_MODE=") } + ["SPOOL_HANDLER_MODE=persistent"]
        self.logger = logger
    }

    func run(_ job: Job, _ context: JobContext) -> HandlerOutcome {
        let process: PersistentProcess
        if let warm = takeIdle() {
            process = warm
        } else {
            do {
                process = try PersistentProcess.start(command: command, environment: environment)
            } catch {
                return .failure("\(error)", retry: true)
            }
            reaper?.watch(process.pid)
            logger.info("persistent handler started", metadata: ["type": "\(job.type)", "pid": .stringConvertible(process.pid)])
        }
        let answer = process.run(job, context, limits: limits)
        let stderr = CommandHandler.text(process.stderrTail)
        switch answer {
        case .result(let result):
            process.jobsRun += 1
            putBack(process, type: job.type)
            return .success(result)
        case .error(let message, let retry):
            process.jobsRun += 1
            putBack(process, type: job.type)
            return .failure(message, retry: retry)
        case .exited(let how):
            drop(process)
            logger.warning("persistent handler died while running a job; the next job starts a new one", metadata: [
                "type": "\(job.type)", "pid": .stringConvertible(process.pid), "job_id": "\(job.id)", "how": "\(how)"])
            return .failure("persistent handler ended (\(how)) before answering" + (stderr.isEmpty ? "" : "; stderr: \(stderr)"),
                            retry: true)
        case .stopped(let why):
            drop(process)
            return .failure(why.description + (stderr.isEmpty ? "" : "; stderr: \(stderr)"), retry: true)
        case .broken(let message):
            drop(process)
            return .failure(message, retry: true)
        }
    }

    /// Ends every idle process (worker shutdown); running ones are stopped with their jobs.
    func shutdown() {
        let all = lock.locked { () -> [PersistentProcess] in
            closed = true
            defer { idle.removeAll() }
            return idle
        }
        for p in all {
            p.retire(graceMs: min(limits.killGraceMs, 1000))
            reaper?.forget(p.pid)
        }
    }

    private func takeIdle() -> PersistentProcess? {
        while let p = lock.locked({ idle.popLast() }) {
            if p.isAlive { return p }
            drop(p)
        }
        return nil
    }

    private func putBack(_ process: PersistentProcess, type: String) {
        guard process.isAlive else { return drop(process) }
        process.drainIdleOutput(limits)
        var why: String?
        if process.jobsRun >= settings.maxJobs {
            why = "ran \(process.jobsRun) jobs (SPOOL_PERSISTENT_MAX_JOBS)"
        } else if settings.maxResidentBytes > 0, let rss = process.residentBytes, rss > settings.maxResidentBytes {
            why = "uses \(rss >> 20) MiB (SPOOL_PERSISTENT_MAX_RSS_MB)"
        }
        let keep = why == nil && lock.locked { () -> Bool in
            if closed { return false }
            idle.append(process)
            return true
        }
        guard !keep else { return }
        if let why {
            logger.info("persistent handler recycled", metadata: ["type": "\(type)", "pid": .stringConvertible(process.pid),
                                                                  "reason": "\(why)"])
        }
        // Retired on a thread of its own: the job's result is not held up by the exit.
        let grace = limits.killGraceMs
        let reaper = self.reaper
        _ = BackgroundThread(name: "spool-retire", stackBytes: 256 << 10) {
            process.retire(graceMs: grace)
            reaper?.forget(process.pid)
        }
    }

    private func drop(_ process: PersistentProcess) {
        process.kill()
        reaper?.forget(process.pid)
    }
}

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
        var signals = Signals.terminationSet()
        var timeout = timespec(tv_sec: 0, tv_nsec: 100_000_000)
        while true {
            let sig = sigtimedwait(&signals, nil, &timeout)
            if sig == SIGTERM || sig == SIGINT { return stop(signal: sig) }
            reapAndRestart()
        }
    }

    private func start(_ i: Int) {
        var args = CommandLine.arguments
        args[0] = Supervisor.executablePath
        args += ["--processes", "1"]
        let env = SettingSource.processEnvironment().filter { $0.key != "SPOOL_PROCESS_INDEX" && $0.key != "SPOOL_PROCESS_COUNT" }
            .map { "\($0.key)=\($0.value)" } + ["SPOOL_PROCESS_INDEX=\(i)", "SPOOL_PROCESS_COUNT=\(count)"]
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // The child takes termination signals itself (the supervisor blocks them).
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK))
        var pid: pid_t = 0
        let rc = withCStrings(args) { argv in withCStrings(env) { envp in posix_spawn(&pid, args[0], nil, &attr, argv, envp) } }
        let now = Clock.monotonicMillis()
        if rc != 0 {
            logger.error("could not start worker process", metadata: ["index": .stringConvertible(i), "error": "\(String(cString: strerror(rc)))"])
            scheduleRestart(i, now: now)
            return
        }
        children[i].pid = pid
        children[i].startedAt = now
        children[i].restartAt = nil
        logger.info("worker process started", metadata: ["index": .stringConvertible(i), "pid": .stringConvertible(Int(pid))])
    }

    private func reapAndRestart() {
        var status: Int32 = 0
        while true {
            let pid = waitpid(-1, &status, WNOHANG)
            guard pid > 0, let i = children.firstIndex(where: { $0.pid == pid }) else { break }
            children[i].pid = 0
            let now = Clock.monotonicMillis()
            let ranMs = now - children[i].startedAt
            logger.error("worker process exited; restarting", metadata: [
                "index": .stringConvertible(i), "pid": .stringConvertible(Int(pid)), "status": "\(Supervisor.describe(status))",
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
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid > 0, let i = children.firstIndex(where: { $0.pid == pid }) {
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

    static var executablePath: String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        return n > 0 ? String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    }

    static func describe(_ status: Int32) -> String {
        (status & 0x7f) == 0 ? "exit code \((status >> 8) & 0xff)" : "killed by signal \(status & 0x7f)"
    }
}

import Shared
#if canImport(Glibc)
import Glibc
#endif

/// One external handler process: spawned with posix_spawn in its own process
/// group, fed its payload on stdin, its stdout, stderr and fd 3 read in one
/// poll(2) loop, stopped with SIGTERM then SIGKILL to the whole group, and
/// always reaped (no zombies, no orphans left in its group).
final class ChildProcess {
    struct Limits {
        /// stdout kept at most; more fails the job (a result must fit in Redis).
        var maxStdoutBytes = 1 << 20
        /// The tail of stderr kept for the error message.
        var stderrTailBytes = 4096
        /// Longest progress line on fd 3; longer lines are dropped.
        var maxProgressLineBytes = 64 * 1024
        /// Time between SIGTERM and SIGKILL.
        var killGraceMs: Int64 = 5000
    }

    struct Exit {
        /// Exit code, or nil when killed by a signal.
        var code: Int32?
        var signal: Int32?
        var stdout: [UInt8]
        var stdoutOverflow: Bool
        var stderrTail: [UInt8]
        /// Set when the process was stopped (timeout, cancel, …).
        var stopped: StopReason?
    }

    private let limits: Limits
    private let reaper: HandlerReaper?
    private var pid: pid_t = 0
    /// Held while pipes are made and a child spawned (persistent handlers too).
    static let spawnLock = Lock()

    init(limits: Limits, reaper: HandlerReaper?) {
        self.limits = limits
        self.reaper = reaper
    }

    /// Runs `/bin/sh -c command` to the end. `onProgressLine` gets each line
    /// written to fd 3. Throws only when the process could not be started.
    func run(command: String, environment: [String], stdin input: [UInt8], context: JobContext,
             onProgressLine: ([UInt8]) -> Void) throws -> Exit {
        // Pipes are made close-on-exec and the child spawned under one lock, so
        // a handler started by another thread at the same moment cannot inherit
        // this one's pipe ends (which would keep them open past its exit).
        var pipes = Pipes()
        defer { pipes.closeAll() }
        try ChildProcess.spawnLock.locked {
            pipes = try Pipes.open()
            pid = try spawn(command: command, environment: environment, pipes: &pipes)
        }
        pipes.closeChildEnds()
        reaper?.watch(pid)
        defer { reaper?.forget(pid) }

        var stdout: [UInt8] = []
        var overflow = false
        var stderrTail: [UInt8] = []
        var progress: [UInt8] = []
        /// The rest of an overlong fd 3 line is being skipped, up to its newline.
        var skippingLine = false
        var written = 0
        var termSentAt: Int64?
        var status: ExitStatus?
        var exitSeenAt: Int64 = 0

        while true {
            if status == nil, let ended = ExitStatus.ended(pid) {
                status = ended.status
                exitSeenAt = Clock.monotonicMillis()
            }
            let exited = status != nil
            let now = Clock.monotonicMillis()
            // Stopping, and the kill grace is over (or the lease allows no more).
            func graceOver() -> Bool {
                termSentAt.map { now - $0 >= limits.killGraceMs || now >= context.killDeadline ?? .max } ?? false
            }
            if exited {
                if termSentAt != nil {
                    // Stopping: a shell (`sh -c script`) dies of SIGTERM at once,
                    // before the script it started; the script's own clean-up
                    // still gets the kill grace, until its group is empty.
                    if graceOver() || !groupAlive() { break }
                } else if pipes.allReadClosed || now - exitSeenAt > 200 {
                    // After the handler exits, a grandchild that still holds its
                    // pipes gets a short while, then the group is killed.
                    break
                }
            }
            if termSentAt == nil, let why = context.checkDeadline() ?? context.stopReason {
                _ = why
                signalGroup(SIGTERM)
                termSentAt = now
                if context.stopReason == .shutdown { signalGroup(SIGKILL) }
            }
            if graceOver() { signalGroup(SIGKILL) }

            let readable = pipes.openReadEnds
            let writable = written < input.count && pipes.stdinWrite >= 0 ? pipes.stdinWrite : nil
            // With every pipe closed, only the exit is awaited: check often, so
            // a finished handler is noticed within a millisecond, not 100.
            let timeout = readable.isEmpty && writable == nil
                ? (termSentAt != nil && exited ? 10 : 1) : Int32(max(1, min(100, context.deadline - now)))
            guard let ready = PipeIO.wait(readable: readable, writable: writable, timeoutMs: timeout) else { break }
            for fd in ready {
                if fd == pipes.stdinWrite {
                    if let n = PipeIO.write(fd, input, from: written) {
                        written += n
                    } else {
                        // EPIPE: the handler does not read its stdin; that is its choice.
                        written = input.count
                    }
                    if written >= input.count { pipes.closeStdin() }
                } else if fd == pipes.stdoutRead {
                    readSome(fd, pipes: &pipes) { chunk in
                        if stdout.count + chunk.count > limits.maxStdoutBytes { overflow = true } else { stdout += chunk }
                    }
                } else if fd == pipes.stderrRead {
                    readSome(fd, pipes: &pipes) { chunk in
                        stderrTail += chunk
                        if stderrTail.count > limits.stderrTailBytes { stderrTail.removeFirst(stderrTail.count - limits.stderrTailBytes) }
                    }
                } else if fd == pipes.progressRead {
                    readSome(fd, pipes: &pipes) { chunk in
                        progress += chunk
                        while let nl = progress.firstIndex(of: 0x0A) {
                            if skippingLine {
                                skippingLine = false
                            } else if nl > limits.maxProgressLineBytes {
                                context.droppedOverlongLine(limit: limits.maxProgressLineBytes)
                            } else {
                                onProgressLine(Array(progress[..<nl]))
                            }
                            progress.removeFirst(nl + 1)
                        }
                        if progress.count > limits.maxProgressLineBytes {
                            if !skippingLine { context.droppedOverlongLine(limit: limits.maxProgressLineBytes) }
                            skippingLine = true
                            progress.removeAll()
                        }
                    }
                }
            }
            if input.isEmpty { pipes.closeStdin() }
            context.flushEvents()
            context.flushProgress(force: false)
        }
        let ended = status ?? ExitStatus.wait(pid) ?? ExitStatus(raw: 0)
        // Anything left in the group (children that ignored SIGTERM, daemons it
        // started) goes with it: a job leaves nothing running behind.
        signalGroup(SIGKILL)
        return Exit(code: ended.code, signal: ended.signal, stdout: stdout, stdoutOverflow: overflow, stderrTail: stderrTail,
                    stopped: termSentAt != nil ? context.stopReason : nil)
    }

    private func signalGroup(_ sig: Int32) {
        if pid > 0 { kill(-pid, sig) }
    }

    /// Whether any process of the handler's group is still there.
    private func groupAlive() -> Bool {
        pid > 0 && kill(-pid, 0) == 0
    }

    private func spawn(command: String, environment: [String], pipes: inout Pipes) throws -> pid_t {
        var options = Spawn.Options()
        options.descriptors = [(pipes.stdinRead, 0), (pipes.stdoutWrite, 1), (pipes.stderrWrite, 2), (pipes.progressWrite, 3)]
        // Nothing else of the worker's reaches the handler (hiredis sockets
        // get close-on-exec only after connect).
        options.closeFrom = 4
        // Own process group (to signal the whole tree), default signal actions.
        options.ownProcessGroup = true
        options.defaultSignals = [SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGQUIT]
        do {
            return try Spawn.start("/bin/sh", arguments: ["/bin/sh", "-c", command], environment: environment, options)
        } catch let error as SpawnError {
            throw SpawnError(description: "could not start handler command: \(error)")
        }
    }

    private func readSome(_ fd: Int32, pipes: inout Pipes, _ sink: ([UInt8]) -> Void) {
        switch PipeIO.read(fd) {
        case .bytes(let chunk): sink(chunk)
        case .wouldBlock: break
        case .closed: pipes.closeRead(fd)
        }
    }
}

/// The four pipes between the worker and a handler process.
struct Pipes {
    var stdinRead: Int32 = -1, stdinWrite: Int32 = -1
    var stdoutRead: Int32 = -1, stdoutWrite: Int32 = -1
    var stderrRead: Int32 = -1, stderrWrite: Int32 = -1
    var progressRead: Int32 = -1, progressWrite: Int32 = -1

    /// Opens the four pipes (close-on-exec); the parent's ends are non-blocking.
    static func open() throws -> Pipes {
        var p = Pipes()
        do {
            (p.stdinRead, p.stdinWrite) = try PipeIO.make()
            (p.stdoutRead, p.stdoutWrite) = try PipeIO.make()
            (p.stderrRead, p.stderrWrite) = try PipeIO.make()
            (p.progressRead, p.progressWrite) = try PipeIO.make()
        } catch let error as SpawnError {
            p.closeAll()
            throw SpawnError(description: "\(error) for the handler")
        }
        for fd in [p.stdinWrite, p.stdoutRead, p.stderrRead, p.progressRead] { PipeIO.setNonBlocking(fd) }
        return p
    }

    var allReadClosed: Bool { stdoutRead < 0 && stderrRead < 0 && progressRead < 0 }

    /// The worker's read ends still open.
    var openReadEnds: [Int32] { [stdoutRead, stderrRead, progressRead].filter { $0 >= 0 } }

    mutating func closeChildEnds() {
        for fd in [stdinRead, stdoutWrite, stderrWrite, progressWrite] where fd >= 0 { PipeIO.close(fd) }
        stdinRead = -1; stdoutWrite = -1; stderrWrite = -1; progressWrite = -1
    }

    mutating func closeStdin() {
        if stdinWrite >= 0 { PipeIO.close(stdinWrite); stdinWrite = -1 }
    }

    mutating func closeRead(_ fd: Int32) {
        PipeIO.close(fd)
        if fd == stdoutRead { stdoutRead = -1 }
        if fd == stderrRead { stderrRead = -1 }
        if fd == progressRead { progressRead = -1 }
    }

    mutating func closeAll() {
        closeChildEnds()
        closeStdin()
        for fd in [stdoutRead, stderrRead, progressRead] where fd >= 0 { closeRead(fd) }
    }
}

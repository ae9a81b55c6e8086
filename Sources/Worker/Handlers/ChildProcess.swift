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
    private static let spawnLock = Lock()

    /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34+), looked up at
    /// run time: Swift's Glibc module does not declare it. Without it the
    /// close-on-exec flags are the only protection.
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = dlsym(UnsafeMutableRawPointer(bitPattern: 0),
                                                           "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: AddCloseFrom.self) }

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
        var written = 0
        var termSentAt: Int64?
        var status: Int32 = 0
        var exited = false
        var exitSeenAt: Int64 = 0

        while true {
            if !exited, waitpid(pid, &status, WNOHANG) == pid {
                exited = true
                exitSeenAt = Clock.monotonicMillis()
            }
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

            var fds = pipes.pollSet(wantWrite: written < input.count)
            // With every pipe closed, only the exit is awaited: check often, so
            // a finished handler is noticed within a millisecond, not 100.
            let timeout = fds.isEmpty ? (termSentAt != nil && exited ? 10 : 1) : Int32(max(1, min(100, context.deadline - now)))
            if poll(&fds, nfds_t(fds.count), timeout) < 0 && errno != EINTR { break }
            for fd in fds where fd.revents != 0 {
                if fd.fd == pipes.stdinWrite {
                    written += writeSome(fd.fd, input, from: written, pipes: &pipes)
                    if written >= input.count { pipes.closeStdin() }
                } else if fd.fd == pipes.stdoutRead {
                    readSome(fd.fd, pipes: &pipes) { chunk in
                        if stdout.count + chunk.count > limits.maxStdoutBytes { overflow = true } else { stdout += chunk }
                    }
                } else if fd.fd == pipes.stderrRead {
                    readSome(fd.fd, pipes: &pipes) { chunk in
                        stderrTail += chunk
                        if stderrTail.count > limits.stderrTailBytes { stderrTail.removeFirst(stderrTail.count - limits.stderrTailBytes) }
                    }
                } else if fd.fd == pipes.progressRead {
                    readSome(fd.fd, pipes: &pipes) { chunk in
                        progress += chunk
                        while let nl = progress.firstIndex(of: 0x0A) {
                            onProgressLine(Array(progress[..<nl]))
                            progress.removeFirst(nl + 1)
                        }
                        if progress.count > limits.maxProgressLineBytes { progress.removeAll() }
                    }
                }
            }
            if input.isEmpty { pipes.closeStdin() }
            context.flushProgress(force: false)
        }
        if !exited { waitpid(pid, &status, 0) }
        // Anything left in the group (children that ignored SIGTERM, daemons it
        // started) goes with it: a job leaves nothing running behind.
        signalGroup(SIGKILL)
        let code: Int32? = (status & 0x7f) == 0 ? (status >> 8) & 0xff : nil
        let sig: Int32? = code == nil ? status & 0x7f : nil
        return Exit(code: code, signal: sig, stdout: stdout, stdoutOverflow: overflow, stderrTail: stderrTail,
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
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipes.stdinRead, 0)
        posix_spawn_file_actions_adddup2(&actions, pipes.stdoutWrite, 1)
        posix_spawn_file_actions_adddup2(&actions, pipes.stderrWrite, 2)
        posix_spawn_file_actions_adddup2(&actions, pipes.progressWrite, 3)
        // Nothing else of the worker's reaches the handler, even a descriptor
        // another thread opened a moment ago without close-on-exec (hiredis
        // sockets get the flag only after connect).
        if let closeFrom = ChildProcess.addCloseFrom { _ = closeFrom(&actions, 4) }

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // Own process group (to signal the whole tree), default signal
        // dispositions and an empty mask (the worker blocks SIGTERM in its threads).
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attr, 0)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGQUIT] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attr, &defaults)

        let argv = ["/bin/sh", "-c", command]
        var child: pid_t = 0
        let rc = withCStrings(argv) { cargv in
            withCStrings(environment) { cenv in posix_spawn(&child, "/bin/sh", &actions, &attr, cargv, cenv) }
        }
        guard rc == 0 else { throw SpawnError(description: "could not start handler command: \(String(cString: strerror(rc)))") }
        return child
    }

    private func writeSome(_ fd: Int32, _ input: [UInt8], from offset: Int, pipes: inout Pipes) -> Int {
        let n = input.withUnsafeBytes { write(fd, $0.baseAddress! + offset, min(65536, input.count - offset)) }
        if n < 0 {
            // EPIPE: the handler does not read its stdin; that is its choice.
            if errno != EAGAIN && errno != EINTR { pipes.closeStdin(); return input.count - offset }
            return 0
        }
        return n
    }

    private func readSome(_ fd: Int32, pipes: inout Pipes, _ sink: ([UInt8]) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n > 0 { sink(Array(buffer[..<n])) } else if n == 0 || (errno != EAGAIN && errno != EINTR) { pipes.closeRead(fd) }
    }
}

/// The four pipes between the worker and a handler process.
struct Pipes {
    var stdinRead: Int32 = -1, stdinWrite: Int32 = -1
    var stdoutRead: Int32 = -1, stdoutWrite: Int32 = -1
    var stderrRead: Int32 = -1, stderrWrite: Int32 = -1
    var progressRead: Int32 = -1, progressWrite: Int32 = -1

    /// Opens the four pipes; the parent's ends are non-blocking.
    static func open() throws -> Pipes {
        var p = Pipes()
        do {
            (p.stdinRead, p.stdinWrite) = try make()
            (p.stdoutRead, p.stdoutWrite) = try make()
            (p.stderrRead, p.stderrWrite) = try make()
            (p.progressRead, p.progressWrite) = try make()
        } catch {
            p.closeAll()
            throw error
        }
        for fd in [p.stdinWrite, p.stdoutRead, p.stderrRead, p.progressRead] {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        return p
    }

    /// A pipe whose ends close on exec (posix_spawn's dup2 clears the flag on
    /// the child's copies at 0-3).
    private static func make() throws -> (Int32, Int32) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw SpawnError(description: "could not make a pipe for the handler: \(String(cString: strerror(errno)))") }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }

    var allReadClosed: Bool { stdoutRead < 0 && stderrRead < 0 && progressRead < 0 }

    func pollSet(wantWrite: Bool) -> [pollfd] {
        var fds: [pollfd] = []
        if wantWrite && stdinWrite >= 0 { fds.append(pollfd(fd: stdinWrite, events: Int16(POLLOUT), revents: 0)) }
        for fd in [stdoutRead, stderrRead, progressRead] where fd >= 0 {
            fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
        }
        return fds
    }

    mutating func closeChildEnds() {
        for fd in [stdinRead, stdoutWrite, stderrWrite, progressWrite] where fd >= 0 { close(fd) }
        stdinRead = -1; stdoutWrite = -1; stderrWrite = -1; progressWrite = -1
    }

    mutating func closeStdin() {
        if stdinWrite >= 0 { close(stdinWrite); stdinWrite = -1 }
    }

    mutating func closeRead(_ fd: Int32) {
        close(fd)
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

/// Runs `body` with a NULL-terminated C array of the strings.
public func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let cstrings = strings.map { strdup($0) } + [nil]
    defer { for p in cstrings { free(p) } }
    return cstrings.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// A handler process could not be started (a runtime failure of this host,
/// not a configuration error: the job fails and is retried).
struct SpawnError: Error, CustomStringConvertible {
    let description: String
}

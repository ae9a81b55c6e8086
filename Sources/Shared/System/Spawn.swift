#if canImport(Glibc)
import Glibc
#endif

/// Starts child processes: the one place with posix_spawn's C structures and
/// pointers. Used for the worker's handler processes and its reaper, and for
/// the supervisor's worker processes.
public enum Spawn {
    public struct Options {
        /// The child's descriptor `to` is a copy of the parent's `from`.
        public var descriptors: [(from: Int32, to: Int32)] = []
        /// Parent descriptors closed in the child.
        public var close: [Int32] = []
        /// Every descriptor from this one up is closed in the child, even one
        /// another thread opened a moment ago without close-on-exec (glibc
        /// 2.34+; without it the close-on-exec flags are the only protection).
        public var closeFrom: Int32?
        /// The child leads a process group of its own (to signal its whole tree).
        public var ownProcessGroup = false
        /// Signals whose action is reset to the default in the child.
        public var defaultSignals: [Int32] = []

        public init() {}
    }

    /// Starts `path` with `arguments` (argv, from argv[0]) and `environment`
    /// ("NAME=value"), with an empty signal mask: the worker and the
    /// supervisor block termination signals in their threads, their children
    /// must not inherit that. Returns the child's pid.
    public static func start(_ path: String, arguments: [String], environment: [String], _ options: Options = Options()) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (from, to) in options.descriptors { posix_spawn_file_actions_adddup2(&actions, from, to) }
        for fd in options.close { posix_spawn_file_actions_addclose(&actions, fd) }
        if let first = options.closeFrom, let closeFrom = Spawn.addCloseFrom { _ = closeFrom(&actions, first) }

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var flags = POSIX_SPAWN_SETSIGMASK
        if options.ownProcessGroup {
            flags |= POSIX_SPAWN_SETPGROUP
            posix_spawnattr_setpgroup(&attr, 0)
        }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        if !options.defaultSignals.isEmpty {
            flags |= POSIX_SPAWN_SETSIGDEF
            var defaults = sigset_t()
            sigemptyset(&defaults)
            for s in options.defaultSignals { sigaddset(&defaults, s) }
            posix_spawnattr_setsigdefault(&attr, &defaults)
        }
        posix_spawnattr_setflags(&attr, Int16(flags))

        var child: pid_t = 0
        let rc = withCStrings(arguments) { argv in
            withCStrings(environment) { envp in posix_spawn(&child, path, &actions, &attr, argv, envp) }
        }
        guard rc == 0 else { throw SpawnError(description: "could not start \(path): \(String(cString: strerror(rc)))") }
        return child
    }

    /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34+), looked up at
    /// run time: Swift's Glibc module does not declare it.
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = dlsym(UnsafeMutableRawPointer(bitPattern: 0),
                                                           "posix_spawn_file_actions_addclosefrom_np")
        .map { unsafeBitCast($0, to: AddCloseFrom.self) }

    /// Runs `body` with a NULL-terminated C array of the strings.
    private static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
        let cstrings = strings.map { strdup($0) } + [nil]
        defer { for p in cstrings { free(p) } }
        return cstrings.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// This program's own path (from /proc), to start copies of itself.
    public static var executablePath: String {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        return n > 0 ? String(decoding: buf.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    }
}

/// A process could not be started (a runtime failure of this host, not a
/// configuration error).
public struct SpawnError: Error, CustomStringConvertible {
    public let description: String
    public init(description: String) { self.description = description }
}

/// How a child process ended, from waitpid.
public struct ExitStatus: Equatable, CustomStringConvertible {
    public let raw: Int32
    /// Exit code, or nil when killed by a signal.
    public var code: Int32? { (raw & 0x7f) == 0 ? (raw >> 8) & 0xff : nil }
    public var signal: Int32? { code == nil ? raw & 0x7f : nil }
    public var description: String { code.map { "exit code \($0)" } ?? "killed by signal \(signal ?? 0)" }

    public init(raw: Int32) { self.raw = raw }

    /// A child that has ended (`pid`, or any child with -1), without waiting:
    /// its pid and status, or nil when none has.
    public static func ended(_ pid: Int32) -> (pid: Int32, status: ExitStatus)? {
        var status: Int32 = 0
        let got = waitpid(pid, &status, WNOHANG)
        return got > 0 ? (got, ExitStatus(raw: status)) : nil
    }

    /// Waits for `pid` to end; nil when it is not a child (already reaped).
    public static func wait(_ pid: Int32) -> ExitStatus? {
        var status: Int32 = 0
        while true {
            let got = waitpid(pid, &status, 0)
            if got == pid { return ExitStatus(raw: status) }
            if got < 0 && errno == EINTR { continue }
            return nil
        }
    }
}

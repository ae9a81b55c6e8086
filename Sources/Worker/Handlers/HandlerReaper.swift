import Shared
#if canImport(Glibc)
import Glibc
#endif

/// Kills the process groups of running handlers when the worker dies, however
/// it dies (SIGKILL included), so a handler never outlives its worker and never
/// runs alongside the retry of its own job.
///
/// How: a tiny `/bin/sh` loop, started once per worker, reads `+pgid` and
/// `-pgid` lines from a pipe whose write end only the worker holds. When the
/// worker is gone the pipe reaches end-of-file, and the loop SIGKILLs every
/// group still recorded. No signal handler, no timing: the kernel closes the
/// pipe for us.
final class HandlerReaper {
    /// Groups are kept as shell variables; at EOF the remaining ones are killed
    /// (`kill -s KILL -- -PGID`: the spelling dash's builtin kill accepts).
    static let script = #"""
while read -r op pgid; do
  case "$op" in
    +) eval "g_$pgid=1" ;;
    -) unset "g_$pgid" ;;
  esac
done
for g in $(set | sed -n 's/^g_\([0-9][0-9]*\)=.*/\1/p'); do kill -s KILL -- "-$g" 2>/dev/null; done
"""#

    private let lock = Lock()
    private var writeEnd: Int32 = -1
    private var pid: pid_t = 0

    /// Starts the reaper; without it (no /bin/sh), handlers are still killed
    /// on every normal path, just not after a SIGKILL of the worker.
    init() {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[0], 0)
        posix_spawn_file_actions_addclose(&actions, fds[1])
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // Its own process group: a signal meant for the worker's group (Ctrl-C)
        // must not stop the reaper before it has done its job.
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK))
        posix_spawnattr_setpgroup(&attr, 0)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attr, &empty)
        var child: pid_t = 0
        let rc = withCStrings(["/bin/sh", "-c", HandlerReaper.script]) { argv in
            withCStrings(["PATH=/usr/bin:/bin"]) { env in posix_spawn(&child, "/bin/sh", &actions, &attr, argv, env) }
        }
        close(fds[0])
        guard rc == 0 else { close(fds[1]); return }
        writeEnd = fds[1]
        pid = child
    }

    func watch(_ pgid: pid_t) { send("+ \(pgid)\n") }
    func forget(_ pgid: pid_t) { send("- \(pgid)\n") }

    /// At a normal exit: closing the pipe lets the reaper finish (by then no
    /// group is recorded), and it is reaped so it leaves no zombie.
    func stop() {
        lock.locked {
            if writeEnd >= 0 { close(writeEnd) }
            writeEnd = -1
        }
        if pid > 0 {
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            pid = 0
        }
    }

    private func send(_ line: String) {
        lock.locked {
            guard writeEnd >= 0 else { return }
            _ = line.withCString { write(writeEnd, $0, strlen($0)) }
        }
    }
}

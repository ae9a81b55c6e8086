import Shared

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
    private var pid: Int32 = 0

    /// Starts the reaper; without it (no /bin/sh), handlers are still killed
    /// on every normal path, just not after a SIGKILL of the worker.
    init() {
        guard let (readEnd, writeEnd) = try? PipeIO.make() else { return }
        var options = Spawn.Options()
        options.descriptors = [(readEnd, 0)]
        // Its own process group: a signal meant for the worker's group (Ctrl-C)
        // must not stop the reaper before it has done its job.
        options.ownProcessGroup = true
        let child = try? Spawn.start("/bin/sh", arguments: ["/bin/sh", "-c", HandlerReaper.script],
                                     environment: ["PATH=/usr/bin:/bin"], options)
        PipeIO.close(readEnd)
        guard let child else { PipeIO.close(writeEnd); return }
        self.writeEnd = writeEnd
        pid = child
    }

    func watch(_ pgid: Int32) { send("+ \(pgid)\n") }
    func forget(_ pgid: Int32) { send("- \(pgid)\n") }

    /// At a normal exit: closing the pipe lets the reaper finish (by then no
    /// group is recorded), and it is reaped so it leaves no zombie.
    func stop() {
        lock.locked {
            PipeIO.close(writeEnd)
            writeEnd = -1
        }
        if pid > 0 {
            _ = ExitStatus.wait(pid)
            pid = 0
        }
    }

    private func send(_ line: String) {
        lock.locked {
            guard writeEnd >= 0 else { return }
            PipeIO.write(writeEnd, line)
        }
    }
}

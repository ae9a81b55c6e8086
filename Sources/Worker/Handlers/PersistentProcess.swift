import Shared
#if canImport(Glibc)
import Glibc
#endif

/// One long-lived handler process (`--handler TYPE=persistent:COMMAND`): it
/// reads jobs as JSON lines on stdin and answers with JSON lines on stdout,
/// each tagged with the job's id. One job at a time; PersistentHandler keeps
/// a pool of them. Its stderr is read along (the tail goes into error
/// messages); it runs in its own process group, which is what gets signalled.
///
/// The protocol, one line each way per message:
/// - in:  `{"id": ..., "type": ..., "attempt": n, "deadline_ms": epoch ms, "payload": ...}`
/// - out: `{"id": ..., "result": <any JSON>}` or `{"id": ..., "error": "message"}`
///   (with `"retry": false` to send the job to the dead set at once, or
///   `"retry_after_ms": n` for a provider's back-off); before that, as many
///   `{"id": ..., "progress" | "chunk" | "event" | "usage": ...}` as it likes,
///   the lines a one-shot handler writes on fd 3.
final class PersistentProcess {
    let pid: pid_t
    private var stdinFD: Int32
    private var stdoutFD: Int32
    private var stderrFD: Int32
    private var pending: [UInt8] = []
    private(set) var stderrTail: [UInt8] = []
    /// Jobs it has answered.
    var jobsRun = 0
    private var exited: ExitStatus?

    /// How a job sent to the process ended.
    enum Answer {
        case result(String)
        case error(String, retry: Bool)
        /// The process ended (or closed its stdout) before answering.
        case exited(String)
        /// Stopped (timeout, cancel, lease, shutdown): the process was killed.
        case stopped(StopReason)
        /// It broke the protocol (an answer too long): it was killed.
        case broken(String)
    }

    private init(pid: pid_t, stdin: Int32, stdout: Int32, stderr: Int32) {
        self.pid = pid
        stdinFD = stdin
        stdoutFD = stdout
        stderrFD = stderr
    }

    static func start(command: String, environment: [String]) throws -> PersistentProcess {
        var ends: [(Int32, Int32)] = []
        var child: pid_t = 0
        try ChildProcess.spawnLock.locked {
            do {
                for _ in 0..<3 { ends.append(try PipeIO.make()) }
            } catch {
                for (r, w) in ends { PipeIO.close(r); PipeIO.close(w) }
                throw error
            }
            var options = Spawn.Options()
            options.descriptors = [(ends[0].0, 0), (ends[1].1, 1), (ends[2].1, 2)]
            options.closeFrom = 3
            options.ownProcessGroup = true
            options.defaultSignals = [SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGQUIT]
            do {
                child = try Spawn.start("/bin/sh", arguments: ["/bin/sh", "-c", command], environment: environment, options)
            } catch {
                for (r, w) in ends { PipeIO.close(r); PipeIO.close(w) }
                throw SpawnError(description: "could not start persistent handler command: \(error)")
            }
        }
        PipeIO.close(ends[0].0)
        PipeIO.close(ends[1].1)
        PipeIO.close(ends[2].1)
        for fd in [ends[0].1, ends[1].0, ends[2].0] { PipeIO.setNonBlocking(fd) }
        return PersistentProcess(pid: child, stdin: ends[0].1, stdout: ends[1].0, stderr: ends[2].0)
    }

    /// Whether it is still running (an idle process may have died).
    var isAlive: Bool {
        if exited == nil, let ended = ExitStatus.ended(pid) { exited = ended.status }
        return exited == nil
    }

    /// Resident memory of the process (its main process: `exec` in the
    /// command keeps the shell out of the way), from /proc.
    var residentBytes: Int64? {
        guard let text = FileInput.read("/proc/\(pid)/status", maxBytes: 1 << 16) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kb = line.split(separator: " ").compactMap { Int64($0) }.first
            return kb.map { $0 * 1024 }
        }
        return nil
    }

    /// Sends one job and reads until its answer, the process's end, or a stop.
    func run(_ job: Job, _ context: JobContext, limits: ChildProcess.Limits) -> Answer {
        var w = JSONWriter(capacity: job.payload.utf8.count + 160)
        w.beginObject()
        w.field("id", job.id.text)
        w.field("type", job.type)
        w.field("attempt", context.attempt)
        w.field("deadline_ms", Clock.nowMillis() + max(0, context.deadline - Clock.monotonicMillis()))
        w.rawField("payload", job.payload)
        w.endObject()
        var input = w.bytes
        input.append(0x0A)
        var written = 0
        while true {
            if let why = context.checkDeadline() ?? context.stopReason {
                stop(graceMs: why == .shutdown ? 0 : limits.killGraceMs, killBy: context.killDeadline)
                return .stopped(why)
            }
            let readable = [stdoutFD, stderrFD].filter { $0 >= 0 }
            if stdoutFD < 0 || !isAlive {
                // It may have answered just before it ended.
                if let answer = drainStdout(job, context) { return answer }
                drainStderr(limits)
                reap()
                return .exited(exited.map(\.description) ?? "closed its stdout")
            }
            let writable = written < input.count && stdinFD >= 0 ? stdinFD : nil
            let timeout = Int32(max(1, min(100, context.deadline - Clock.monotonicMillis())))
            guard let ready = PipeIO.wait(readable: readable, writable: writable, timeoutMs: timeout) else { continue }
            for fd in ready {
                if fd == stdinFD {
                    if let n = PipeIO.write(fd, input, from: written) { written += n } else {
                        // EPIPE: it closed its stdin; its end is noticed above.
                        written = input.count
                    }
                } else if fd == stderrFD {
                    readStderr(limits)
                } else if fd == stdoutFD {
                    readStdout()
                    if let answer = takeLines(job, context) { return answer }
                    if pending.count > limits.maxStdoutBytes {
                        kill()
                        return .broken("persistent handler wrote a line over \(limits.maxStdoutBytes) bytes (the result limit) without a newline")
                    }
                }
            }
            context.flushEvents()
            context.flushProgress(force: false)
        }
    }

    private func readStdout() {
        switch PipeIO.read(stdoutFD) {
        case .bytes(let chunk): pending += chunk
        case .wouldBlock: break
        case .closed: PipeIO.close(stdoutFD); stdoutFD = -1
        }
    }

    /// Handles the complete lines read so far; the job's answer if one was among them.
    private func takeLines(_ job: Job, _ context: JobContext) -> Answer? {
        while let nl = pending.firstIndex(of: 0x0A) {
            let line = Array(pending[..<nl])
            pending.removeFirst(nl + 1)
            if let answer = answer(line, job, context) {
                context.flushEvents()
                return answer
            }
        }
        return nil
    }

    /// What is left on stdout once the process ended.
    private func drainStdout(_ job: Job, _ context: JobContext) -> Answer? {
        for _ in 0..<1024 where stdoutFD >= 0 {
            let before = pending.count
            readStdout()
            if pending.count == before && stdoutFD >= 0 { break }
        }
        return takeLines(job, context)
    }

    /// The job's answer, if `line` is one; progress, chunks and events go to the context.
    private func answer(_ line: [UInt8], _ job: Job, _ context: JobContext) -> Answer? {
        guard let value = try? JSONParser.parse(line), value.objectMembers != nil else {
            context.ignoredOutput(line, why: "not a JSON object, on the persistent handler's stdout")
            return nil
        }
        guard value["id"]?.stringValue == job.id.text else {
            context.ignoredOutput(line, why: "its id is not the running job's (\(job.id))")
            return nil
        }
        if let result = value["result"] { return .result(result.jsonText) }
        if let error = value["error"] {
            if let after = value["retry_after_ms"]?.integerValue, JobContext.retryAfterRange.contains(after) {
                context.retryAfterMs = after
            }
            let message = error.stringValue ?? error.jsonText
            return .error(message.isEmpty ? "persistent handler reported an error" : message, retry: value["retry"] != .bool(false))
        }
        context.progressLine(line)
        return nil
    }

    private func readStderr(_ limits: ChildProcess.Limits) {
        switch PipeIO.read(stderrFD) {
        case .bytes(let chunk):
            stderrTail += chunk
            if stderrTail.count > limits.stderrTailBytes { stderrTail.removeFirst(stderrTail.count - limits.stderrTailBytes) }
        case .wouldBlock: break
        case .closed: PipeIO.close(stderrFD); stderrFD = -1
        }
    }

    private func drainStderr(_ limits: ChildProcess.Limits) {
        for _ in 0..<64 where stderrFD >= 0 {
            guard let ready = PipeIO.wait(readable: [stderrFD], writable: nil, timeoutMs: 20), !ready.isEmpty else { return }
            readStderr(limits)
        }
    }

    /// Between jobs: empties stderr so that a chatty idle process never blocks on it.
    func drainIdleOutput(_ limits: ChildProcess.Limits) {
        if stderrFD >= 0, PipeIO.wait(readable: [stderrFD], writable: nil, timeoutMs: 0)?.isEmpty == false { readStderr(limits) }
    }

    /// Asks it to exit (EOF on stdin), then SIGTERM, then SIGKILL after the grace.
    func stop(graceMs: Int64, killBy: Int64? = nil) {
        closeStdin()
        if isAlive { signalGroup(SIGTERM) }
        let until = min(Clock.monotonicMillis() + graceMs, killBy ?? .max)
        while isAlive && Clock.monotonicMillis() < until { usleep(5000) }
        kill()
    }

    /// Ends it now, with its whole group.
    func kill() {
        signalGroup(SIGKILL)
        reap()
    }

    /// A retired process gets EOF and `graceMs` to exit by itself.
    func retire(graceMs: Int64) {
        closeStdin()
        let until = Clock.monotonicMillis() + graceMs
        while isAlive && Clock.monotonicMillis() < until { usleep(5000) }
        kill()
    }

    private func closeStdin() {
        if stdinFD >= 0 { PipeIO.close(stdinFD); stdinFD = -1 }
    }

    private func signalGroup(_ sig: Int32) { Glibc.kill(-pid, sig) }

    private func reap() {
        signalGroup(SIGKILL)
        if exited == nil { exited = ExitStatus.wait(pid) ?? ExitStatus(raw: 0) }
        closeStdin()
        for fd in [stdoutFD, stderrFD] where fd >= 0 { PipeIO.close(fd) }
        stdoutFD = -1
        stderrFD = -1
    }
}

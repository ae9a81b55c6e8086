import Shared

/// Runs an external command for a job type (`--handler TYPE=COMMAND`).
///
/// Protocol: the payload JSON on stdin; env SPOOL_JOB_ID, SPOOL_QUEUE,
/// SPOOL_JOB_TYPE, SPOOL_ATTEMPT; stdout is the result (JSON if it parses,
/// else a JSON string); exit 0 is success, anything else a failure whose
/// message is the tail of stderr; progress as JSON lines on fd 3.
struct CommandHandler: JobHandler {
    let command: String
    let limits: ChildProcess.Limits
    let reaper: HandlerReaper?
    /// The worker's own environment, passed on to every handler.
    let baseEnvironment: [String]

    func run(_ job: Job, _ context: JobContext) -> HandlerOutcome {
        let env = baseEnvironment.filter { !$0.hasPrefix("SPOOL_JOB_") && !$0.hasPrefix("SPOOL_QUEUE=") && !$0.hasPrefix("SPOOL_ATTEMPT=") }
            + ["SPOOL_JOB_ID=\(job.id)", "SPOOL_QUEUE=\(job.id.queue)", "SPOOL_JOB_TYPE=\(job.type)", "SPOOL_ATTEMPT=\(context.attempt)"]
        let exit: ChildProcess.Exit
        do {
            exit = try ChildProcess(limits: limits, reaper: reaper).run(command: command, environment: env, stdin: Array(job.payload.utf8),
                                                        context: context, onProgressLine: { context.progressLine($0) })
        } catch {
            return .failure("\(error)", retry: true)
        }
        let stderr = CommandHandler.text(exit.stderrTail)
        if let why = exit.stopped { return .failure(why.description + (stderr.isEmpty ? "" : "; stderr: \(stderr)"), retry: true) }
        if exit.stdoutOverflow {
            return .failure("handler wrote more than \(limits.maxStdoutBytes) bytes to stdout (the result limit)", retry: true)
        }
        guard exit.code == 0 else {
            let how = exit.code.map { "exit code \($0)" } ?? "killed by signal \(exit.signal ?? 0)"
            return .failure(stderr.isEmpty ? "handler failed with \(how)" : "handler failed with \(how): \(stderr)", retry: true)
        }
        if String(validating: exit.stdout, as: UTF8.self) == nil {
            // Decoding it anyway would store U+FFFD in place of the bytes: a
            // silently corrupted result. Failing says what is wrong instead.
            let offset = CommandHandler.firstInvalidUTF8(exit.stdout) ?? 0
            return .failure("handler wrote \(exit.stdout.count) bytes to stdout that are not UTF-8 (first bad byte at offset \(offset)); "
                            + "a result must be JSON or UTF-8 text (encode binary data, e.g. as base64)", retry: true)
        }
        return .success(CommandHandler.resultJSON(exit.stdout))
    }

    /// The offset of the first byte that does not belong to valid UTF-8.
    static func firstInvalidUTF8(_ bytes: [UInt8]) -> Int? {
        var decoder = UTF8()
        var iterator = bytes.makeIterator()
        var offset = 0
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let scalar): offset += UTF8.width(scalar)
            case .emptyInput: return nil
            case .error: return offset
            }
        }
    }

    /// stdout as the result: its JSON when it parses, else a JSON string;
    /// empty output is null.
    static func resultJSON(_ stdout: [UInt8]) -> String {
        var bytes = stdout[...]
        while let last = bytes.last, last == 0x0A || last == 0x0D || last == 0x20 || last == 0x09 { bytes = bytes.dropLast() }
        if bytes.isEmpty { return "null" }
        if let value = try? JSONParser.parse(Array(bytes)) { return value.jsonText }
        return JSONWriter.quoted(String(decoding: bytes, as: UTF8.self))
    }

    static func text(_ bytes: [UInt8]) -> String {
        String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: " \n\r\t")
    }
}

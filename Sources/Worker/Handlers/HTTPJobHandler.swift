import Shared

/// A job type served over HTTP (`--handler TYPE=http://127.0.0.1:9000/path`):
/// the worker POSTs the payload to a service that stays up (a FastAPI app, a
/// sidecar), so nothing starts per job. The job's id, attempt and deadline
/// travel in headers; the job's timeout bounds the whole request.
///
/// The answer:
/// - 2xx: the body is the result (JSON when it parses, else a JSON string;
///   empty is null); a `Spool-Usage: n` header settles the job's limit usage;
/// - 2xx with `text/event-stream` or `application/x-ndjson`: streamed; each
///   SSE message (or NDJSON line) becomes a chunk of the job's event log as
///   it arrives; an SSE event named `result` (or an NDJSON line
///   `{"result": ...}`) is the result, `error` fails the job, other names are
///   named events;
/// - 429 or 503 with `Retry-After`: the provider's back-off (the job runs
///   again after it without using an attempt, and its limit pauses as long);
/// - any other status fails the job with the body's tail; 4xx other than
///   408, 409, 425 and 429 sends it to the dead set at once (the request
///   itself is wrong: retrying cannot help).
struct HTTPJobHandler: JobHandler {
    let target: HTTPTarget
    let limits: ChildProcess.Limits

    /// Longest piece of an error body quoted in the job's error.
    static let errorTailBytes = 1024

    func run(_ job: Job, _ context: JobContext) -> HandlerOutcome {
        let headers = [
            ("Content-Type", "application/json"),
            ("User-Agent", "spool-worker/\(SpoolVersion.current)"),
            ("Spool-Job-Id", job.id.text),
            ("Spool-Job-Type", job.type),
            ("Spool-Queue", job.id.queue),
            ("Spool-Attempt", String(context.attempt)),
            ("Spool-Deadline-Ms", String(Clock.nowMillis() + max(0, context.deadline - Clock.monotonicMillis()))),
        ]
        var status = 0
        var responseHeaders: [String: String] = [:]
        var stream: ResponseStream?
        var body: [UInt8] = []
        var overflow = false
        do {
            try HTTPClient.post(target, headers: headers, body: Array(job.payload.utf8), deadline: context.deadline,
                                stopped: { context.checkDeadline() ?? context.stopReason != nil }, onHead: { head in
                status = head.status
                responseHeaders = head.headers
                let type = head.headers["content-type"]?.lowercased() ?? ""
                if (200..<300).contains(head.status) {
                    if type.hasPrefix("text/event-stream") { stream = ResponseStream(kind: .sse) }
                    if type.hasPrefix("application/x-ndjson") || type.hasPrefix("application/jsonl") {
                        stream = ResponseStream(kind: .ndjson)
                    }
                }
            }, onBody: { piece in
                if stream != nil {
                    stream?.feed(piece, context)
                    context.flushEvents()
                    context.flushProgress(force: false)
                } else if body.count + piece.count > limits.maxStdoutBytes {
                    overflow = true
                } else {
                    body += piece
                }
            })
        } catch {
            if let why = context.stopReason { return .failure(why.description, retry: true) }
            return .failure("HTTP handler \(target): \(error)", retry: true)
        }
        if let usage = responseHeaders["spool-usage"].flatMap({ Int64($0) }), JobContext.usageRange.contains(usage) {
            context.usage = usage
        }
        if (200..<300).contains(status) {
            if var stream {
                stream.finish(context)
                if let message = stream.error { return .failure(message, retry: true) }
                return .success(stream.result ?? "null")
            }
            if overflow { return .failure("HTTP handler \(target) answered more than \(limits.maxStdoutBytes) bytes (the result limit)", retry: true) }
            return .success(CommandHandler.resultJSON(body))
        }
        let tail = CommandHandler.text(Array(body.suffix(HTTPJobHandler.errorTailBytes)))
        let message = "HTTP \(status) from \(target)" + (tail.isEmpty ? "" : ": \(tail)")
        if status == 429 || status == 503, let after = responseHeaders["retry-after"].flatMap(HTTPJobHandler.retryAfterMs) {
            context.retryAfterMs = min(max(1, after), JobContext.retryAfterRange.upperBound)
        }
        let final = (400..<500).contains(status) && ![408, 409, 425, 429].contains(status)
        return .failure(message, retry: !final)
    }

    /// `Retry-After` as milliseconds: delay-seconds, or an HTTP date.
    static func retryAfterMs(_ value: String) -> Int64? {
        // Capped before the multiplication: a day is the longest back-off anyway.
        if let seconds = Int64(value.trimmingCharacters(in: " ")), seconds >= 0 { return min(seconds, 86_400) * 1000 }
        guard let at = Timestamp.parseHTTPDate(value) else { return nil }
        return max(0, at - Clock.nowMillis())
    }
}

/// A streamed 2xx response read as it arrives: SSE messages or NDJSON lines.
struct ResponseStream {
    enum Kind { case sse, ndjson }
    let kind: Kind
    private var pending: [UInt8] = []
    private var eventName = ""
    private var data: [String] = []
    /// The result (JSON text), once an SSE `result` event or NDJSON `{"result": ...}` came.
    private(set) var result: String?
    private(set) var error: String?

    init(kind: Kind) { self.kind = kind }

    mutating func feed(_ bytes: [UInt8], _ context: JobContext) {
        pending += bytes
        while let nl = pending.firstIndex(of: 0x0A) {
            var line = Array(pending[..<nl])
            pending.removeFirst(nl + 1)
            if line.last == 0x0D { line.removeLast() }
            take(line, context)
        }
    }

    mutating func finish(_ context: JobContext) {
        if !pending.isEmpty { take(pending, context); pending = [] }
        if kind == .sse { dispatch(context) }
    }

    private mutating func take(_ line: [UInt8], _ context: JobContext) {
        switch kind {
        case .ndjson:
            guard !line.isEmpty else { return }
            guard let value = try? JSONParser.parse(line) else {
                return context.ignoredOutput(line, why: "not JSON, in the handler's NDJSON stream")
            }
            if let r = value["result"], value.objectMembers?.count == 1 { result = r.jsonText } else { context.emitChunk(value) }
        case .sse:
            if line.isEmpty { return dispatch(context) }
            let text = String(decoding: line, as: UTF8.self)
            if text.hasPrefix(":") { return }
            let (field, value) = ResponseStream.fieldAndValue(text)
            switch field {
            case "event": eventName = value
            case "data": data.append(value)
            default: break
            }
        }
    }

    /// One SSE message is complete (a blank line).
    private mutating func dispatch(_ context: JobContext) {
        defer { eventName = ""; data = [] }
        guard !data.isEmpty else { return }
        let text = data.joined(separator: "\n")
        let value = (try? JSONParser.parse(Array(text.utf8))) ?? .string(text)
        switch eventName {
        case "", "message": context.emitChunk(value)
        case "result": result = value.jsonText
        case "error": error = value.stringValue ?? value.jsonText
        default:
            if JobContext.isEventName(eventName) { context.emitEvent(eventName, data: value) }
        }
    }

    static func fieldAndValue(_ line: String) -> (String, String) {
        guard let colon = line.firstIndex(of: ":") else { return (line, "") }
        var value = line[line.index(after: colon)...]
        if value.hasPrefix(" ") { value = value.dropFirst() }
        return (String(line[..<colon]), String(value))
    }
}

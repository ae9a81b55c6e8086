import Shared

/// The built-in handlers, for demos, tests and benchmarks.
enum BuiltinHandlers {
    static func all() -> [String: JobHandler] {
        ["noop": Noop(), "echo": Echo(), "sleep": Sleep(), "fail": Fail(), "stream": Stream(), "clock": WallClock()]
    }

    /// Succeeds at once with `{"started_us": n}`, the wall clock (µs) when it
    /// began: how long after a client's call a job starts (`make bench`).
    struct WallClock: JobHandler {
        func run(_ job: Job, _ context: JobContext) -> HandlerOutcome {
            .success("{\"started_us\":\(Clock.nowMicros())}")
        }
    }

    /// Succeeds at once with a null result.
    struct Noop: JobHandler {
        func run(_ job: Job, _ context: JobContext) -> HandlerOutcome { .success("null") }
    }

    /// Succeeds with its payload as the result.
    struct Echo: JobHandler {
        func run(_ job: Job, _ context: JobContext) -> HandlerOutcome { .success(job.payload) }
    }

    /// Waits `{"ms": n}` milliseconds (0 to 86,400,000), then succeeds with null.
    /// Reports its progress (milliseconds slept of the total) as it goes, and
    /// stops early when cancelled, timed out or shut down.
    struct Sleep: JobHandler {
        static let sliceMs: Int64 = 250

        func run(_ job: Job, _ context: JobContext) -> HandlerOutcome {
            guard let payload = try? JSONParser.parse(job.payload), let ms = payload["ms"]?.integerValue,
                  (0...86_400_000).contains(ms) else {
                return .failure("sleep: payload must be {\"ms\": n} with n from 0 to 86400000", retry: false)
            }
            var slept: Int64 = 0
            while slept < ms {
                let slice = min(Sleep.sliceMs, ms - slept)
                if let why = context.sleep(ms: slice) { return .failure("sleep: \(why)", retry: true) }
                slept += slice
                if slept < ms {
                    context.reportProgress(current: .number(String(slept)), total: .number(String(ms)), message: "sleeping")
                }
            }
            return .success("null")
        }
    }

    /// `{"chunks": n, "interval_ms": m, "offset_ms": o}` (n up to 1,000,000, m
    /// and o up to 60,000): after o ms, streams n chunks `{"i": k, "sent_us":
    /// wall clock µs}`, m ms apart, each written at once, then succeeds with
    /// `{"chunks": n}`. For trying streams and measuring their delay (the
    /// offset spreads many jobs' chunks evenly over the interval).
    struct Stream: JobHandler {
        func run(_ job: Job, _ context: JobContext) -> HandlerOutcome {
            guard let payload = try? JSONParser.parse(job.payload), let n = payload["chunks"]?.integerValue,
                  (0...1_000_000).contains(n) else {
                return .failure("stream: payload must be {\"chunks\": n, \"interval_ms\": m} with n from 0 to 1000000", retry: false)
            }
            let interval = payload["interval_ms"]?.integerValue ?? 0
            let offset = payload["offset_ms"]?.integerValue ?? 0
            guard (0...60_000).contains(interval), (0...60_000).contains(offset) else {
                return .failure("stream: interval_ms and offset_ms must be from 0 to 60000", retry: false)
            }
            if offset > 0, let why = context.sleep(ms: offset) { return .failure("stream: \(why)", retry: true) }
            let start = Clock.monotonicMillis()
            for i in 0..<n {
                // On a fixed schedule (chunk i at i × interval), so the rate holds whatever a write takes.
                let wait = start + i * interval - Clock.monotonicMillis()
                if i > 0 && wait > 0, let why = context.sleep(ms: wait) { return .failure("stream: \(why)", retry: true) }
                if let why = context.checkDeadline() ?? context.stopReason { return .failure("stream: \(why)", retry: true) }
                context.emitChunk(.object([JSONValue.Member("i", .number(String(i))),
                                           JSONValue.Member("sent_us", .number(String(Clock.nowMicros())))]))
                if interval > 0 { context.flushEvents() }
            }
            return .success("{\"chunks\":\(n)}")
        }
    }

    /// `{"times": n, "message": "..."}`: fails its first n attempts with the
    /// message, then succeeds with null. Without `times` it always fails.
    struct Fail: JobHandler {
        func run(_ job: Job, _ context: JobContext) -> HandlerOutcome {
            let payload = (try? JSONParser.parse(job.payload)) ?? .null
            let times = payload["times"]?.integerValue ?? Int64.max
            let message = payload["message"]?.stringValue ?? "failed on purpose"
            if Int64(context.attempt) <= times { return .failure(message, retry: true) }
            return .success("null")
        }
    }
}

import ArgumentParser
import Shared
#if canImport(Glibc)
import Glibc
#endif

// spool-bench: the load generator behind `make bench` (scripts/bench.py runs
// it). Each subcommand prints one JSON object with what it measured.

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool-bench", abstract: "Load generator for Spool's benchmark",
        subcommands: [Sequential.self, Batch.self, Latency.self, WaitProcessed.self, Slots.self])
}

struct Target: ParsableArguments {
    @Option(help: "API address host:port") var addr = "127.0.0.1:8080"
    @Option(help: "Queue") var queue = "bench"

    var host: String { String(addr.split(separator: ":")[0]) }
    var port: Int { Int(addr.split(separator: ":")[1]) ?? 8080 }
}

func emit(_ build: (inout JSONWriter) -> Void) {
    var w = JSONWriter()
    w.beginObject()
    build(&w)
    w.endObject()
    print(w.text)
}

/// The Redis Cluster slot Spool computes for each key, one per line (the
/// cluster tests compare them with `CLUSTER KEYSLOT`).
struct Slots: ParsableCommand {
    @Argument(help: "Keys") var keys: [String] = []

    func run() throws {
        for key in keys { print(ClusterSlot.of(key)) }
    }
}

/// Scenario 2: one client, keep-alive, one job per request.
struct Sequential: ParsableCommand {
    @OptionGroup var target: Target
    @Option(help: "Jobs to enqueue") var count = 20_000

    func run() throws {
        let client = try BenchHTTPClient(host: target.host, port: target.port)
        let body = Array(#"{"type":"noop","payload":{"n":1}}"#.utf8)
        let start = Clock.monotonicNanos()
        for _ in 0..<count {
            let (status, _) = try client.request("POST", "/v1/queues/\(target.queue)/jobs", body: body)
            guard status == 201 else { throw ConfigError("enqueue answered \(status)") }
        }
        let seconds = Double(Clock.monotonicNanos() - start) / 1e9
        emit { w in w.field("jobs", count); w.key("seconds"); w.raw(String(seconds)); w.key("rate"); w.raw(String(Double(count) / seconds)) }
    }
}

/// Scenario 4: batches of jobs per request, over one or more connections.
struct Batch: ParsableCommand {
    @OptionGroup var target: Target
    @Option(help: "Batches per connection") var batches = 50
    @Option(help: "Jobs per batch") var size = 1000
    @Option(help: "Parallel connections") var connections = 1
    @Option(help: "Priority of the jobs") var priority = "normal"

    func run() throws {
        let job = #"{"type":"noop","priority":"\#(priority)"}"#
        let body = Array((#"{"jobs":["# + Array(repeating: job, count: size).joined(separator: ",") + "]}").utf8)
        let path = "/v1/queues/\(target.queue)/jobs/batch"
        let failures = Lock()
        var failed = 0
        let start = Clock.monotonicNanos()
        let threads = (0..<connections).map { _ in
            BackgroundThread(name: "bench") {
                guard let client = try? BenchHTTPClient(host: target.host, port: target.port) else {
                    failures.locked { failed += 1 }
                    return
                }
                for _ in 0..<batches {
                    let (status, _) = (try? client.request("POST", path, body: body)) ?? (0, [])
                    if status != 201 { failures.locked { failed += 1 } }
                }
            }
        }
        for t in threads { t.join(timeoutMs: 3_600_000) }
        let seconds = Double(Clock.monotonicNanos() - start) / 1e9
        guard failed == 0 else { throw ConfigError("\(failed) batch requests failed") }
        let jobs = batches * size * connections
        emit { w in w.field("jobs", jobs); w.key("seconds"); w.raw(String(seconds)); w.key("rate"); w.raw(String(Double(jobs) / seconds)) }
    }
}

/// Scenario 6: jobs at a steady rate to idle workers; enqueue-to-start time
/// per job from the job's own timestamps (both on Redis' clock, in µs).
struct Latency: ParsableCommand {
    @OptionGroup var target: Target
    @Option(help: "Redis URL") var redisURL = "redis://127.0.0.1:6379"
    @Option(help: "Key prefix") var prefix = "spool"
    @Option(help: "Jobs") var count = 2000
    @Option(help: "Jobs per second") var rate = 200

    func run() throws {
        let client = try BenchHTTPClient(host: target.host, port: target.port)
        let body = Array(#"{"type":"noop"}"#.utf8)
        var ids: [JobID] = []
        let interval = 1_000_000_000 / UInt64(rate)
        let start = Clock.monotonicNanos()
        for i in 0..<count {
            let due = start + UInt64(i) * interval
            while Clock.monotonicNanos() < due { usleep(UInt32(max(1, Int(due - Clock.monotonicNanos()) / 1000))) }
            let (status, reply) = try client.request("POST", "/v1/queues/\(target.queue)/jobs", body: body)
            guard status == 201, let text = (try? JSONParser.parse(reply))?["id"]?.stringValue, let id = JobID(parsing: text) else {
                throw ConfigError("enqueue answered \(status)")
            }
            ids.append(id)
        }
        let redis = RedisConnection(endpoint: try RedisEndpoint(url: redisURL))
        let schema = KeySchema(prefix: prefix)
        var samples: [Int64] = []
        let deadline = Clock.monotonicMillis() + 30_000
        for id in ids {
            while true {
                let f = try redis.command(["HMGET", schema.job(id), "created_at", "started_at"]).array ?? []
                if f.count == 2, let c = f[0].int, let s = f[1].int { samples.append(s - c); break }
                guard Clock.monotonicMillis() < deadline else { throw ConfigError("job \(id) never started") }
                usleep(1000)
            }
        }
        samples.sort()
        func pct(_ p: Double) -> Int64 { samples[min(samples.count - 1, Int(Double(samples.count) * p))] }
        emit { w in
            w.field("jobs", samples.count)
            w.field("p50_us", pct(0.50))
            w.field("p99_us", pct(0.99))
            w.field("max_us", samples.last ?? 0)
        }
    }
}

/// Scenario 5: waits until a queue's processed counter reaches a target,
/// checked in Redis, and reports how long that took.
struct WaitProcessed: ParsableCommand {
    @Option(help: "Redis URL") var redisURL = "redis://127.0.0.1:6379"
    @Option(help: "Key prefix") var prefix = "spool"
    @Option(help: "Queue") var queue = "bench"
    @Option(help: "Processed count to wait for") var target = 100_000
    @Option(help: "Give up after this many seconds") var timeout = 600
    @Option(help: "Also report the rate of each slice of this many jobs (0: none)") var slice = 0
    @Option(help: "Also report the rate over the first this many jobs (0: none)") var first = 0

    func run() throws {
        let redis = RedisConnection(endpoint: try RedisEndpoint(url: redisURL))
        let key = KeySchema(prefix: prefix).stats(queue)
        let start = Clock.monotonicNanos()
        // Slices are timed from the first job seen done, so that the workers'
        // start-up does not count against the first slice.
        var seen: (count: Int, at: UInt64)?
        var marks: [(count: Int, at: UInt64)] = []
        var nextMark = slice > 0 ? slice : Int.max
        var firstAt: UInt64?
        while true {
            let processed = Int(try redis.command(["HGET", key, "processed"]).int ?? 0)
            let now = Clock.monotonicNanos()
            if seen == nil, processed > 0 { seen = (processed, now) }
            while processed >= nextMark, nextMark <= target {
                marks.append((nextMark, now))
                nextMark += slice
            }
            if first > 0, firstAt == nil, processed >= first { firstAt = now }
            if processed >= target { break }
            guard Double(now - start) / 1e9 < Double(timeout) else {
                throw ConfigError("only \(processed) of \(target) processed after \(timeout) s")
            }
            usleep(2000)
        }
        let seconds = Double(Clock.monotonicNanos() - start) / 1e9
        func rate(_ jobs: Int, _ from: UInt64, _ to: UInt64) -> String {
            to > from ? String(Double(jobs) / (Double(to - from) / 1e9)) : "null"
        }
        emit { w in
            w.field("jobs", target); w.key("seconds"); w.raw(String(seconds)); w.key("rate"); w.raw(String(Double(target) / seconds))
            if let seen {
                if let firstAt { w.key("first_rate"); w.raw(rate(first - seen.count, seen.at, firstAt)) }
                if !marks.isEmpty {
                    w.key("slice_rates")
                    var previous = seen
                    w.raw("[" + marks.map { m in
                        defer { previous = m }
                        return rate(m.count - previous.count, previous.at, m.at)
                    }.joined(separator: ",") + "]")
                }
            }
        }
    }
}

Bench.main()

import XCTest
@testable import Shared

/// The event log scripts: a log exists only on demand, starts from the job's
/// hash, gets every state change once it exists, keeps its start when full,
/// and goes with its job.
final class EventLogScriptTests: ScriptTestCase {
    /// The log's entries as (kind, state or data) pairs.
    func log(_ id: JobID) throws -> [(String, String)] {
        let reply = try redis.command(["XRANGE", schema.events(id), "-", "+"])
        return (reply.array ?? []).map { entry in
            let flat = entry.array![1].array!.compactMap(\.string)
            var fields: [String: String] = [:]
            for i in stride(from: 0, to: flat.count - 1, by: 2) { fields[flat[i]] = flat[i + 1] }
            let kind = fields["t"] ?? "?"
            return (kind, kind == "state" ? fields["s"]! + "/" + fields["a"]! : fields["d"] ?? "")
        }
    }

    func append(_ id: JobID, attempt: Int = 1, worker: String = "w1", _ chunks: [String], maxEvents: Int = 100,
                maxBytes: Int = 10_000) throws -> AppendEventsCall.Outcome {
        try redis.run(AppendEventsCall(schema: schema, jobID: id, workerID: worker, attempt: attempt,
                                       entries: chunks.map { .init(kind: .chunk, data: $0) }, maxEvents: maxEvents, maxBytes: maxBytes))
    }

    func testKeyNamesTheScriptsDeriveMatchTheSchema() {
        // EventLogLua builds them from the job prefix and the finished channel.
        XCTAssertEqual(schema.eventsPrefix("q"), String(schema.jobPrefix("q").dropLast("job:".count)) + "events:")
        XCTAssertEqual(schema.queueEvents("q"), String(schema.jobPrefix("q").dropLast("job:".count)) + "queue-events")
        XCTAssertEqual(schema.eventsChannel, String(schema.finishedChannel.dropLast("finished".count)) + "events")
    }

    func testAJobNobodyAskedForHasNoLog() throws {
        let job = try created(try enqueue())
        _ = try fetch()
        XCTAssertEqual(try redis.run(CompleteCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, resultJSON: "1")), true)
        XCTAssertEqual(try redis.command(["EXISTS", schema.events(job.id)]).int, 0)
    }

    func testOpeningStartsFromTheHashThenEveryChangeIsAppended() throws {
        let job = try created(try enqueue())
        XCTAssertEqual(try redis.run(OpenEventsCall(schema: schema, jobID: job.id)), .queued)
        XCTAssertEqual(try redis.run(OpenEventsCall(schema: schema, jobID: job.id)), .queued, "a second open adds nothing")
        _ = try fetch()
        XCTAssertEqual(try append(job.id, ["\"a\"", "\"b\""]), .appended(2, dropped: 0))
        _ = try redis.run(FailCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, errorJSON: "{\"message\":\"x\"}",
                                   retryDelayMs: 0, deadTTLSeconds: 60, deadMax: 10))
        try makeDue(job.id)
        _ = try fetch()
        _ = try redis.run(CompleteCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 2, resultJSON: "42"))
        let entries = try log(job.id)
        XCTAssertEqual(entries.map(\.0), ["state", "state", "chunk", "chunk", "state", "state", "state", "state"])
        XCTAssertEqual(entries.filter { $0.0 == "state" }.map(\.1),
                       ["queued/0", "running/1", "scheduled/1", "queued/1", "running/2", "succeeded/2"])
        // The log expires with the job.
        let jobTTL = try redis.command(["TTL", schema.job(job.id)]).int!
        let logTTL = try redis.command(["TTL", schema.events(job.id)]).int!
        XCTAssertTrue(jobTTL > 0 && abs(jobTTL - logTTL) <= 1, "\(jobTTL) \(logTTL)")
    }

    func testALateLogStartsWithTheFinishedState() throws {
        let job = try created(try enqueue())
        _ = try fetch()
        _ = try redis.run(CompleteCall(schema: schema, jobID: job.id, workerID: "w1", attempt: 1, resultJSON: "{\"ok\":1}"))
        XCTAssertEqual(try redis.run(OpenEventsCall(schema: schema, jobID: job.id)), .succeeded)
        XCTAssertEqual(try log(job.id).map(\.1), ["queued/0", "running/1", "succeeded/1"])
        XCTAssertGreaterThan(try redis.command(["TTL", schema.events(job.id)]).int!, 0)
        XCTAssertNil(try redis.run(OpenEventsCall(schema: schema, jobID: JobID.generate(queue: "q"))))
    }

    func testAStaleWorkerWritesNothing() throws {
        let job = try created(try enqueue())
        _ = try fetch()
        XCTAssertEqual(try append(job.id, worker: "w2", ["1"]), .leaseLost)
        XCTAssertEqual(try append(job.id, attempt: 2, ["1"]), .leaseLost)
        XCTAssertEqual(try redis.command(["EXISTS", schema.events(job.id)]).int, 0)
    }

    func testAFullLogKeepsItsStartAndSaysSoOnce() throws {
        let job = try created(try enqueue())
        _ = try fetch()
        // queued and running are two of the 6 entries.
        XCTAssertEqual(try append(job.id, ["1", "2", "3", "4", "5"], maxEvents: 6), .appended(4, dropped: 1))
        XCTAssertEqual(try append(job.id, ["6"], maxEvents: 6), .appended(0, dropped: 1))
        let entries = try log(job.id)
        XCTAssertEqual(entries.filter { $0.0 == "chunk" }.map(\.1), ["1", "2", "3", "4"])
        XCTAssertEqual(entries.filter { $0.0 == "dropped" }.count, 1)
        XCTAssertEqual(try redis.command(["HGET", schema.job(job.id), "ev_dropped"]).int, 2)
        // The byte cap works the same way.
        let other = try created(try enqueue())
        _ = try fetch()
        // ... and drops everything after the first drop, even what would fit: no gap.
        XCTAssertEqual(try append(other.id, [String(repeating: "7", count: 600), String(repeating: "8", count: 600), "9"],
                                  maxBytes: 1000), .appended(1, dropped: 2))
        XCTAssertEqual(try append(other.id, ["1"], maxBytes: 1000), .appended(0, dropped: 1))
    }

    func testDeletedJobsTakeTheirLogs() throws {
        let ids = try makeDead(2)
        for id in ids { _ = try redis.run(OpenEventsCall(schema: schema, jobID: id)) }
        XCTAssertEqual(try log(ids[0]).last?.1, "dead/1")
        _ = try redis.run(PurgeDeadCall(schema: schema, queue: "q"))
        for id in ids { XCTAssertEqual(try redis.command(["EXISTS", schema.events(id)]).int, 0) }
    }

    func testTheQueueLogIsWrittenOnlyWhileFollowed() throws {
        try enqueue()
        XCTAssertEqual(try redis.command(["EXISTS", schema.queueEvents("q")]).int, 0)
        let span = try redis.run(FollowQueueCall(schema: schema, queue: "q", ttlSeconds: 30))
        XCTAssertEqual(span.oldest, span.newest)
        let job = try created(try enqueue())
        _ = try fetch()
        let entries = try redis.command(["XRANGE", schema.queueEvents("q"), "(" + span.newest, "+"]).array ?? []
        let states = entries.map { $0.array![1].array!.compactMap(\.string) }.map { f in f[f.firstIndex(of: "s")! + 1] }
        // The first job was fetched, not the second: FIFO.
        XCTAssertEqual(states, ["queued", "running"])
        XCTAssertEqual(try redis.command(["TTL", schema.queueEvents("q")]).int.map { $0 > 0 && $0 <= 30 }, true)
        _ = job
    }
}

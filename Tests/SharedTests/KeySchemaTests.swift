import XCTest
@testable import Shared

final class KeySchemaTests: XCTestCase {
    func testEveryKeyName() {
        let k = KeySchema(prefix: "spool")
        let id = JobID(parsing: "emails~01M81YVWNZR77G18MNQ3BGA5QK")!
        let table: [(String, String)] = [
            (k.job(id), "spool:{emails}:job:emails~01M81YVWNZR77G18MNQ3BGA5QK"),
            (k.pending("emails", .urgent), "spool:{emails}:pending:urgent"),
            (k.pending("emails", .low), "spool:{emails}:pending:low"),
            (k.lease("emails"), "spool:{emails}:lease"),
            (k.scheduled("emails"), "spool:{emails}:scheduled"),
            (k.dead("emails"), "spool:{emails}:dead"),
            (k.wake("emails"), "spool:{emails}:wake"),
            (k.idempotency("emails", "order-7"), "spool:{emails}:idem:order-7"),
            (k.stats("emails"), "spool:{emails}:stats"),
            (k.paused("emails"), "spool:{emails}:paused"),
            (k.queues, "spool:queues"),
            (k.workers, "spool:workers"),
            (k.worker("host-1-abcd"), "spool:worker:host-1-abcd"),
        ]
        for (actual, expected) in table { XCTAssertEqual(actual, expected) }
    }

    /// Invariant 4: keys one script touches share the `{queue}` hash tag.
    func testEveryScriptKeySharesTheQueueHashTag() {
        let k = KeySchema(prefix: "custom")
        for call in ScriptCatalog.calls(k, queue: "q1") {
            XCTAssertGreaterThanOrEqual(call.keys.count, 1, call.script.name)
            for key in call.keys where call.script.name != "check_queue" {
                XCTAssertTrue(key.hasPrefix("custom:{q1}:"), "\(call.script.name): \(key)")
            }
        }
    }

    /// A limit's scripts touch only its keys, which share the limit's hash tag.
    func testEveryLimitScriptKeySharesTheLimitsHashTag() {
        let k = KeySchema(prefix: "custom")
        for call in ScriptCatalog.limitCalls(k, limit: "openai") {
            XCTAssertEqual(call.keys.count, 4, call.script.name)
            for key in call.keys { XCTAssertTrue(key.hasPrefix("custom:limit:{openai}"), "\(call.script.name): \(key)") }
        }
        XCTAssertEqual(k.limited("q1", limit: "openai"), "custom:{q1}:limited:openai")
        XCTAssertEqual(k.limitedSet("q1"), "custom:{q1}:limited")
    }

    func testPriorityIndexesMatchTheScriptsNumbering() {
        XCTAssertEqual(Priority.allCases.map(\.index), [1, 2, 3, 4])
        XCTAssertEqual(Priority.urgent.index, 1)
    }
}

final class JobCodecTests: XCTestCase {
    func testEnqueueFieldsDecodeBack() throws {
        var job = Job(id: JobID.generate(queue: "q"), type: "mail:send")
        job.payload = #"{"to":"a@b.c"}"#
        job.priority = .high
        job.options.maxAttempts = 3
        job.options.timeoutMs = 60_000
        job.idempotencyKey = "k1"
        var hash: [String: String] = ["state": "queued", "created_at": "1700000000000123"]
        let f = job.enqueueFields
        for i in stride(from: 0, to: f.count, by: 2) { hash[f[i]] = f[i + 1] }
        let decoded = try Job(id: job.id, hash: hash)
        XCTAssertEqual(decoded.type, "mail:send")
        XCTAssertEqual(decoded.payload, #"{"to":"a@b.c"}"#)
        XCTAssertEqual(decoded.priority, .high)
        XCTAssertEqual(decoded.options, job.options)
        XCTAssertEqual(decoded.idempotencyKey, "k1")
        XCTAssertEqual(decoded.createdUs, 1_700_000_000_000_123)
    }

    func testJSONShowsTheContractFields() throws {
        var job = Job(id: JobID(parsing: "q~01M81YVWNZR77G18MNQ3BGA5QK")!, type: "echo")
        job.state = .succeeded
        job.payload = "[1]"
        job.result = #"{"ok":true}"#
        job.error = Job.errorJSON(message: "boom \"x\"", attempt: 1)
        job.createdUs = 0
        let value = try JSONParser.parse(job.json)
        XCTAssertEqual(value["id"], .string("q~01M81YVWNZR77G18MNQ3BGA5QK"))
        XCTAssertEqual(value["queue"], .string("q"))
        XCTAssertEqual(value["state"], .string("succeeded"))
        XCTAssertEqual(value["payload"], .array([.number("1")]))
        XCTAssertEqual(value["result"]?["ok"], .bool(true))
        XCTAssertEqual(value["error"]?["message"], .string("boom \"x\""))
        XCTAssertEqual(value["created_at"], .string("1970-01-01T00:00:00.000Z"))
        XCTAssertEqual(value["started_at"], .null)
        for key in ["type", "priority", "attempts", "max_attempts", "progress", "finished_at", "worker"] {
            XCTAssertNotNil(value[key], key)
        }
    }

    func testResultOnlyShownWhenSucceeded() throws {
        var job = Job(id: JobID.generate(queue: "q"), type: "t")
        job.state = .running
        XCTAssertNil(try JSONParser.parse(job.json)["result"])
    }

    func testDamagedHashesAreReportedNotGuessed() {
        let id = JobID.generate(queue: "q")
        XCTAssertThrowsError(try Job(id: id, hash: ["state": "queued"])) { XCTAssertTrue("\($0)".contains("'type'")) }
        XCTAssertThrowsError(try Job(id: id, hash: ["type": "t"])) { XCTAssertTrue("\($0)".contains("'state'")) }
        XCTAssertThrowsError(try Job(id: id, hash: ["type": "t", "state": "weird"])) { XCTAssertTrue("\($0)".contains("unknown value")) }
        XCTAssertThrowsError(try Job(id: id, hash: ["type": "t", "state": "queued", "attempts": "x"])) {
            XCTAssertTrue("\($0)".contains("'attempts' is not a number"))
        }
    }
}

import XCTest
@testable import Shared

/// The scripts as Redis gets them: each compiles, and each piece it is made
/// of appears once.
final class LuaScriptTests: ScriptTestCase {
    func testEveryScriptLoadsUnderTheNameEVALSHAUses() throws {
        let calls = ScriptCatalog.calls(schema, queue: "q") + ScriptCatalog.limitCalls(schema, limit: "l")
        XCTAssertEqual(Set(calls.map(\.script.name)).count, 31, "every script is in the catalog")
        for call in calls {
            let reply = try redis.command(["SCRIPT", "LOAD", call.script.source])
            XCTAssertEqual(reply.string, call.script.sha1, "\(call.script.name): \(reply)")
        }
    }

    func testAPieceUsedTwiceIsIncludedOnce() {
        // complete_and_fetch uses claim_jobs and complete_job, which both use
        // the clock, queue_keys and (through others) wake.
        let source = CompleteAndFetchCall.script.source
        for piece in ["clock", "queue_keys", "wake", "receipts", "finishing"] {
            XCTAssertEqual(source.components(separatedBy: "-- [\(piece)]\n").count - 1, 1, piece)
        }
        XCTAssertFalse(source.contains("-- [bury]"), "a script carries only the pieces it uses")
        let fnNames = source.split(separator: "\n").filter { $0.hasPrefix("local function ") }
        XCTAssertEqual(fnNames.count, Set(fnNames).count, "no function defined twice")
    }

    func testAPieceComesAfterThePiecesItUses() {
        let source = SettleCall.script.source
        let order = ["lease", "priority_rank", "wake", "give_back", "receipts", "settle"].map {
            source.range(of: "-- [\($0)]\n")!.lowerBound
        }
        XCTAssertEqual(order, order.sorted())
    }
}

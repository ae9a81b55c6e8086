import XCTest
@testable import Shared

final class CommandLineOptionsTests: XCTestCase {
    let options: [CommandLineOptions.Option] = [.init("queues", "q"), .init("handler", "h", repeatable: true)]

    func testValuesInBothFormsLastWinsAndRepeatable() throws {
        let parsed = try XCTUnwrap(try CommandLineOptions.parse(
            ["--queues", "a", "--handler=x=echo 1", "--handler", "y=cat", "--queues=b"], options: options))
        XCTAssertEqual(parsed["queues"], "b", "the last value wins (the supervisor appends flags)")
        XCTAssertEqual(parsed.all("handler"), ["x=echo 1", "y=cat"])
        XCTAssertNil(parsed["missing"])
    }

    func testHelpIsRecognised() throws {
        XCTAssertNil(try CommandLineOptions.parse(["--queues", "a", "--help"], options: options))
        XCTAssertNil(try CommandLineOptions.parse(["-h"], options: options))
        let text = CommandLineOptions.help(program: "p", abstract: "a", options: options)
        XCTAssertTrue(text.contains("--queues") && text.contains("--handler <value> (repeatable)"))
    }

    func testErrorsNameTheProblem() {
        let cases: [([String], String)] = [
            (["--nope", "1"], "unknown option '--nope'"),
            (["--queues"], "option '--queues' needs a value"),
            (["queues"], "unexpected argument 'queues'"),
            (["--"], "unexpected argument '--'"),
        ]
        for (args, expected) in cases {
            XCTAssertThrowsError(try CommandLineOptions.parse(args, options: options), "\(args)") {
                XCTAssertTrue("\($0)".contains(expected), "\($0)")
            }
        }
    }
}

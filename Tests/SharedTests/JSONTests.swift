import XCTest
@testable import Shared

final class JSONTests: XCTestCase {
    func testRoundTripKeepsOrderNumbersAndUnicode() throws {
        let text = #"{"b":1,"a":[true,false,null,-0.5e-3,12345678901234567890123],"s":"é\n\"\\\u0001 😀"}"#
        let value = try JSONParser.parse(text)
        XCTAssertEqual(value.jsonText, #"{"b":1,"a":[true,false,null,-0.5e-3,12345678901234567890123],"s":"é\n\"\\\u0001 😀"}"#)
        XCTAssertEqual(value["a"]?.arrayValue?.last, .number("12345678901234567890123"))
    }

    func testEscapesAndSurrogatePairs() throws {
        XCTAssertEqual(try JSONParser.parse(#""\ud83d\ude00 \u00e9 \/""#), .string("😀 é /"))
    }

    func testRejectsMalformedInputWithAPreciseMessage() {
        let cases: [(String, String)] = [
            ("", "unexpected end of input"),
            ("{", "unexpected end of input in an object"),
            (#"{"a":1,}"#, "expected a string key"),
            ("[1,]", "unexpected character"),
            ("01", "unexpected text after the JSON value"),
            ("1.", "digits must follow '.'"),
            ("tru", "unexpected end of input"),
            (#""\ud800""#, "unpaired surrogate"),
            ("\"a\u{1}\"", "control character"),
            (#""\x""#, "invalid escape"),
            ("{} {}", "unexpected text after the JSON value"),
        ]
        for (input, expected) in cases {
            XCTAssertThrowsError(try JSONParser.parse(input), input) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(input): \(error)")
            }
        }
    }

    func testRejectsInvalidUTF8() {
        XCTAssertThrowsError(try JSONParser.parse([0x22, 0xC3, 0x28, 0x22])) { error in
            XCTAssertTrue("\(error)".contains("not valid UTF-8"), "\(error)")
        }
    }

    func testLimitsNesting() throws {
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        XCTAssertThrowsError(try JSONParser.parse(deep)) { XCTAssertTrue("\($0)".contains("nesting deeper than 64")) }
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        XCTAssertNoThrow(try JSONParser.parse(ok))
    }

    func testIntegerValueOnlyForWholeNumbersThatFit() {
        XCTAssertEqual(JSONValue.number("42").integerValue, 42)
        XCTAssertNil(JSONValue.number("4.2").integerValue)
        XCTAssertNil(JSONValue.number("1e3").integerValue)
        XCTAssertNil(JSONValue.number("99999999999999999999").integerValue)
        XCTAssertNil(JSONValue.string("42").integerValue)
    }

    func testWriterBuildsNestedObjects() {
        var w = JSONWriter()
        w.beginObject()
        w.field("a", "x")
        w.key("o")
        w.beginObject()
        w.field("n", 1)
        w.endObject()
        w.rawField("r", #"[1,2]"#)
        w.field("z", nil as String?)
        w.endObject()
        XCTAssertEqual(w.text, #"{"a":"x","o":{"n":1},"r":[1,2],"z":null}"#)
    }
}

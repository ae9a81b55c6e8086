import XCTest
@testable import Shared

/// The request-head parser on its own: what it accepts, and the status each
/// malformed head gets (the e2e fuzz test sends the same over a socket).
final class HTTPHeadParserTests: XCTestCase {
    func parse(_ head: String) throws -> HTTPHeadParser.Head {
        let bytes = Array(head.utf8)
        return try bytes.withUnsafeBufferPointer { try HTTPHeadParser.parse($0) }
    }

    func status(_ head: String) -> Int? {
        do {
            _ = try parse(head)
            return nil
        } catch let e as HTTPParseError {
            return e.status
        } catch {
            return -1
        }
    }

    func testParsesRequestLineHeadersAndQuery() throws {
        let h = try parse("POST /v1/jobs/a%7Eb?wait=5&x HTTP/1.1\r\nHost: here\r\nCONTENT-length:  12 \r\nX-Odd:\tv\t")
        XCTAssertEqual(h.method, "POST")
        XCTAssertEqual(h.path, "/v1/jobs/a%7Eb")
        XCTAssertEqual(h.query, ["wait": "5", "x": ""])
        XCTAssertEqual(h.contentLength, 12)
        XCTAssertTrue(h.keepAlive)
        XCTAssertFalse(h.expectsContinue)
        XCTAssertEqual(h.headers.map(\.name), ["Host", "CONTENT-length", "X-Odd"])
        XCTAssertEqual(h.headers.map(\.value), ["here", "12", "v"])
    }

    func testConnectionAndExpectHeaders() throws {
        XCTAssertFalse(try parse("GET / HTTP/1.1\r\nConnection: Close").keepAlive)
        XCTAssertFalse(try parse("GET / HTTP/1.0").keepAlive)
        XCTAssertTrue(try parse("GET / HTTP/1.0\r\nconnection: keep-alive").keepAlive)
        XCTAssertTrue(try parse("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3").expectsContinue)
    }

    func testMalformedHeadsGetTheirStatus() {
        XCTAssertEqual(status(""), 400)
        XCTAssertEqual(status("get / HTTP/1.1"), 400, "lower-case method")
        XCTAssertEqual(status("GET  / HTTP/1.1"), 400, "double space")
        XCTAssertEqual(status("GET / HTTP/1.1 x"), 400, "four parts")
        XCTAssertEqual(status("GET / HTTP/2.0"), 505)
        XCTAssertEqual(status("GET x HTTP/1.1"), 400, "not an absolute path")
        XCTAssertEqual(status("GET / HTTP/1.1\r\nno colon"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\n: empty name"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\n folded: x"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nBad Name: x"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nContent-Length: -1"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2"), 400)
        XCTAssertNil(status("GET / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2"), "repeated equal lengths are fine")
        XCTAssertNil(status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked"), "chunked bodies are read")
        XCTAssertEqual(status("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked"), 501)
        XCTAssertEqual(status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5"), 400, "both framings")
        XCTAssertEqual(status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked"), 400)
        XCTAssertEqual(status("GET / HTTP/1.1\r\nX: \u{00E9}"), nil, "UTF-8 values are accepted")
        XCTAssertEqual(status("GET / HTTP/1.1\r\n" + (0...100).map { "H\($0): v" }.joined(separator: "\r\n")), 431)
    }

    func testInvalidUTF8IsRejected() {
        let bytes: [UInt8] = Array("GET / HTTP/1.1\r\nX: ".utf8) + [0xFF, 0xFE]
        XCTAssertThrowsError(try bytes.withUnsafeBufferPointer { try HTTPHeadParser.parse($0) }) { error in
            XCTAssertEqual((error as? HTTPParseError)?.status, 400)
        }
    }
}

final class ChunkedBodyTests: XCTestCase {
    func testChunkSizeIsHexDigitsOnly() {
        XCTAssertEqual(ChunkedBody.chunkSize(Array("1a".utf8)), 26)
        XCTAssertEqual(ChunkedBody.chunkSize(Array("0000000010;name=value".utf8)), 16, "leading zeros and extensions")
        XCTAssertEqual(ChunkedBody.chunkSize(Array("A \t;x".utf8)), 10, "whitespace before extensions")
        XCTAssertEqual(ChunkedBody.chunkSize(Array("0".utf8)), 0)
        for bad in ["-5", "+5", "1 0", "", " 1", "0x10", "g", "ffffffffffffffff", "5 x"] {
            XCTAssertNil(ChunkedBody.chunkSize(Array(bad.utf8)), bad)
        }
    }
}

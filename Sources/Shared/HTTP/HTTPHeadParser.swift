/// A request head that failed to parse, with the status to answer.
struct HTTPParseError: Error {
    let status: Int
    let code: String
    let message: String
}

/// Parses the request line and headers (everything before the blank line).
public enum HTTPHeadParser {
    static let maxHeaders = 100

    struct Head {
        var method: String
        var path: String
        var query: [String: String]
        var headers: [(name: String, value: String)]
        var contentLength: Int
        /// `Transfer-Encoding: chunked`: the body comes in chunks (ChunkedBody).
        var chunked: Bool
        var keepAlive: Bool
        var expectsContinue: Bool
        /// An HTTP/1.0 request: its reply may not use chunked encoding.
        var isHTTP10 = false
    }

    /// Works on the bytes, not on a String: splitting the head as a String
    /// was a quarter of the API's CPU time under load.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws -> Head {
        if !bytes.allSatisfy({ $0 < 0x80 }) && String(validating: bytes, as: UTF8.self) == nil {
            throw bad("request head is not valid UTF-8")
        }
        var lines = HeadLines(bytes)
        guard let requestLine = lines.next(), !requestLine.isEmpty else { throw bad("empty request") }
        let (method, target, version) = try parseRequestLine(requestLine)
        let isHTTP11 = version.elementsEqual("HTTP/1.1".utf8)
        guard isHTTP11 || version.elementsEqual("HTTP/1.0".utf8) else {
            throw HTTPParseError(status: 505, code: "http_version_not_supported", message: "only HTTP/1.0 and HTTP/1.1 are supported")
        }
        var headers: [(name: String, value: String)] = []
        var contentLength = 0
        var sawLength = false
        var connection = ""
        var expectsContinue = false
        var chunked = false
        while let line = lines.next() {
            if line.isEmpty && lines.atEnd { break }
            guard headers.count < maxHeaders else {
                throw HTTPParseError(status: 431, code: "headers_too_large", message: "more than \(maxHeaders) headers")
            }
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon != line.startIndex,
                  line.first != space, line.first != tab else { throw bad("malformed header line") }
            let nameBytes = line[..<colon]
            let name = String(decoding: nameBytes, as: UTF8.self)
            guard !nameBytes.contains(space) else { throw bad("malformed header name '\(name.prefix(40))'") }
            var valueBytes = line[(colon + 1)...]
            while let b = valueBytes.first, b == space || b == tab { valueBytes = valueBytes.dropFirst() }
            while let b = valueBytes.last, b == space || b == tab { valueBytes = valueBytes.dropLast() }
            let value = String(decoding: valueBytes, as: UTF8.self)
            headers.append((name, value))
            if equalsIgnoringCase(nameBytes, "content-length") {
                guard let n = Int(value), n >= 0, !sawLength || n == contentLength else { throw bad("invalid Content-Length") }
                contentLength = n
                sawLength = true
            } else if equalsIgnoringCase(nameBytes, "transfer-encoding") {
                guard !chunked else { throw bad("Transfer-Encoding is given twice") }
                guard value.lowercased() == "chunked" else {
                    throw HTTPParseError(status: 501, code: "not_implemented",
                                         message: "Transfer-Encoding '\(value.prefix(40))' is not supported; send the body as is (Content-Length) or chunked")
                }
                chunked = true
            } else if equalsIgnoringCase(nameBytes, "connection") {
                connection = value.lowercased()
            } else if equalsIgnoringCase(nameBytes, "expect") {
                expectsContinue = value.lowercased() == "100-continue"
            }
        }
        guard target.first == UInt8(ascii: "/") else { throw bad("request target must be an absolute path") }
        if chunked {
            // Both framings at once is how requests are smuggled past proxies (RFC 9112 §6.1).
            guard !sawLength else { throw bad("a request may not have both Content-Length and Transfer-Encoding") }
            guard isHTTP11 else { throw bad("Transfer-Encoding needs HTTP/1.1") }
        }
        let (path, query) = splitTarget(Substring(String(decoding: target, as: UTF8.self)))
        // (String.contains set up a generic searcher on every request, even
        // for an empty value: it showed in profiles.)
        let keepAlive = isHTTP11 ? !hasToken(connection, "close") : hasToken(connection, "keep-alive")
        return Head(method: String(decoding: method, as: UTF8.self), path: path, query: query, headers: headers,
                    contentLength: contentLength, chunked: chunked, keepAlive: keepAlive, expectsContinue: expectsContinue,
                    isHTTP10: !isHTTP11)
    }

    /// Whether the lower-cased header value contains `token`.
    private static func hasToken(_ value: String, _ token: String) -> Bool {
        guard !value.isEmpty else { return false }
        let v = Array(value.utf8), t = Array(token.utf8)
        guard v.count >= t.count else { return false }
        return (0...(v.count - t.count)).contains { v[$0..<($0 + t.count)].elementsEqual(t) }
    }

    private static let space = UInt8(ascii: " ")
    private static let tab = UInt8(ascii: "\t")
    typealias Bytes = Slice<UnsafeBufferPointer<UInt8>>

    /// "METHOD SP target SP version", with exactly two single spaces and an
    /// upper-case method.
    private static func parseRequestLine(_ line: Bytes) throws -> (Bytes, Bytes, Bytes) {
        guard let firstSpace = line.firstIndex(of: space),
              let secondSpace = line[(firstSpace + 1)...].firstIndex(of: space),
              !line[(secondSpace + 1)...].contains(space) else { throw bad("malformed request line") }
        let method = line[..<firstSpace]
        guard !method.isEmpty, method.allSatisfy({ $0 >= 0x41 && $0 <= 0x5A }) else { throw bad("malformed request line") }
        return (method, line[(firstSpace + 1)..<secondSpace], line[(secondSpace + 1)...])
    }

    /// Whether ASCII `bytes` equal the lower-case `name`, ignoring case.
    private static func equalsIgnoringCase(_ bytes: Bytes, _ name: StaticString) -> Bool {
        guard bytes.count == name.utf8CodeUnitCount else { return false }
        let expected = UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        return zip(bytes, expected).allSatisfy { b, e in (b >= 0x41 && b <= 0x5A ? b | 0x20 : b) == e }
    }

    /// The CRLF-separated lines of a request head.
    struct HeadLines {
        private let bytes: UnsafeBufferPointer<UInt8>
        private var position: Int

        init(_ bytes: UnsafeBufferPointer<UInt8>) {
            self.bytes = bytes
            position = 0
        }

        var atEnd: Bool { position >= bytes.count }

        mutating func next() -> Bytes? {
            guard position < bytes.count else { return nil }
            var i = position
            while i + 1 < bytes.count && !(bytes[i] == 0x0D && bytes[i + 1] == 0x0A) { i += 1 }
            if i + 1 >= bytes.count { i = bytes.count }
            let line = bytes[position..<i]
            position = i + 2
            return line
        }
    }

    static func splitTarget(_ target: Substring) -> (String, [String: String]) {
        guard let q = target.firstIndex(of: "?") else { return (String(target), [:]) }
        var query: [String: String] = [:]
        for pair in target[target.index(after: q)...].split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            query[percentDecode(kv[0]) ?? String(kv[0])] = kv.count > 1 ? (percentDecode(kv[1]) ?? String(kv[1])) : ""
        }
        return (String(target[..<q]), query)
    }

    /// Decodes %XX escapes (see PercentDecoding); nil when malformed or not UTF-8.
    public static func percentDecode(_ s: Substring) -> String? { PercentDecoding.decode(s) }

    static func bad(_ message: String) -> HTTPParseError {
        HTTPParseError(status: 400, code: "bad_request", message: message)
    }
}

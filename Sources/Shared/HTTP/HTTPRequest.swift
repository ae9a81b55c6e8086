/// One parsed HTTP request, body included.
public struct HTTPRequest {
    public var method: String
    /// The path without its query string, percent-decoding not applied.
    public var path: String
    public var query: [String: String]
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    public var keepAlive: Bool

    public func header(_ name: String) -> String? {
        headers.first(where: { $0.name.lowercased() == name })?.value
    }

    /// Path segments, e.g. `/v1/jobs/abc` → ["v1", "jobs", "abc"].
    public var segments: [Substring] { path.split(separator: "/", omittingEmptySubsequences: true) }
}

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
        var keepAlive: Bool
        var expectsContinue: Bool
    }

    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws -> Head {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw bad("request head is not valid UTF-8")
        }
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let requestLine = lines.first else { throw bad("empty request") }
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].utf8.allSatisfy({ $0 >= 0x41 && $0 <= 0x5A }) else {
            throw bad("malformed request line")
        }
        let version = parts[2]
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else {
            throw HTTPParseError(status: 505, code: "http_version_not_supported", message: "only HTTP/1.0 and HTTP/1.1 are supported")
        }
        guard lines.count - 1 <= maxHeaders else {
            throw HTTPParseError(status: 431, code: "headers_too_large", message: "more than \(maxHeaders) headers")
        }
        var headers: [(name: String, value: String)] = []
        var contentLength = 0
        var sawLength = false
        var connection = ""
        var expectsContinue = false
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex,
                  line.first != " ", line.first != "\t" else { throw bad("malformed header line") }
            let name = String(line[..<colon])
            guard !name.contains(" ") else { throw bad("malformed header name '\(name.prefix(40))'") }
            let value = String(line[line.index(after: colon)...]).trimmingCharacters(in: " \t")
            headers.append((name, value))
            switch name.lowercased() {
            case "content-length":
                guard let n = Int(value), n >= 0, !sawLength || n == contentLength else { throw bad("invalid Content-Length") }
                contentLength = n
                sawLength = true
            case "transfer-encoding":
                throw HTTPParseError(status: 411, code: "length_required",
                                     message: "send the body with a Content-Length header; chunked request bodies are not supported")
            case "connection": connection = value.lowercased()
            case "expect": expectsContinue = value.lowercased() == "100-continue"
            default: break
            }
        }
        let target = parts[1]
        guard target.hasPrefix("/") else { throw bad("request target must be an absolute path") }
        let (path, query) = splitTarget(target)
        let keepAlive = version == "HTTP/1.1" ? !connection.contains("close") : connection.contains("keep-alive")
        return Head(method: String(parts[0]), path: path, query: query, headers: headers,
                    contentLength: contentLength, keepAlive: keepAlive, expectsContinue: expectsContinue)
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

    /// Decodes %XX escapes (and '+' is left alone); nil when the result is not UTF-8.
    public static func percentDecode(_ s: Substring) -> String? {
        guard s.contains("%") else { return String(s) }
        var out: [UInt8] = []
        var bytes = Array(s.utf8)[...]
        while let b = bytes.popFirst() {
            if b == 0x25 {
                guard bytes.count >= 2, let v = UInt8(String(decoding: bytes.prefix(2), as: UTF8.self), radix: 16) else { return nil }
                out.append(v)
                bytes = bytes.dropFirst(2)
            } else {
                out.append(b)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    static func bad(_ message: String) -> HTTPParseError {
        HTTPParseError(status: 400, code: "bad_request", message: message)
    }
}

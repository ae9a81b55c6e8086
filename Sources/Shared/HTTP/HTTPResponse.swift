/// An HTTP response: a status, a JSON body and a few extra headers.
public struct HTTPResponse {
    public var status: Int
    /// The body as UTF-8 bytes (what goes on the wire).
    public var body: [UInt8]
    public var headers: [(String, String)] = []
    public var contentType = "application/json"

    public init(status: Int, body: String, headers: [(String, String)] = [], contentType: String = "application/json") {
        self.init(status: status, bytes: Array(body.utf8), headers: headers, contentType: contentType)
    }

    public init(status: Int, bytes: [UInt8], headers: [(String, String)] = [], contentType: String = "application/json") {
        self.status = status
        self.body = bytes
        self.headers = headers
        self.contentType = contentType
    }

    /// `{"error":{"code":...,"message":...}}`, the shape of every error.
    public static func error(_ status: Int, _ code: String, _ message: String, headers: [(String, String)] = []) -> HTTPResponse {
        var w = JSONWriter()
        w.beginObject()
        w.key("error")
        w.beginObject()
        w.field("code", code)
        w.field("message", message)
        w.endObject()
        w.endObject()
        return HTTPResponse(status: status, body: w.text, headers: headers)
    }

    public static func json(_ status: Int, headers: [(String, String)] = [], _ build: (inout JSONWriter) -> Void) -> HTTPResponse {
        var w = JSONWriter()
        build(&w)
        return HTTPResponse(status: status, bytes: w.bytes, headers: headers)
    }

    /// The bytes on the wire; a reply to HEAD has the headers only.
    func serialized(keepAlive: Bool, includeBody: Bool = true) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(128 + (includeBody ? body.count : 0))
        func line(_ parts: String...) {
            for p in parts { bytes.append(contentsOf: p.utf8) }
            bytes.append(contentsOf: [0x0D, 0x0A])
        }
        line("HTTP/1.1 ", String(status), " ", HTTPResponse.reason(status))
        line("Content-Type: ", contentType)
        // A 204 has no body, and no Content-Length either (RFC 9110).
        if status != 204 { line("Content-Length: ", String(body.count)) }
        for (name, value) in headers { line(name, ": ", value) }
        if !keepAlive { line("Connection: close") }
        line()
        if includeBody { bytes.append(contentsOf: body) }
        return bytes
    }

    /// The head of a response whose body follows in chunks (a stream); to an
    /// HTTP/1.0 client, without them: the body ends when the connection does.
    func streamHead(keepAlive: Bool, chunked: Bool) -> [UInt8] {
        var text = "HTTP/1.1 \(status) \(HTTPResponse.reason(status))\r\nContent-Type: \(contentType)\r\n"
        if chunked { text += "Transfer-Encoding: chunked\r\n" }
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if !keepAlive { text += "Connection: close\r\n" }
        return Array((text + "\r\n").utf8)
    }

    static func reason(_ status: Int) -> String {
        switch status {
        case 200: return "OK"
        case 201: return "Created"
        case 204: return "No Content"
        case 400: return "Bad Request"
        case 404: return "Not Found"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 409: return "Conflict"
        case 411: return "Length Required"
        case 413: return "Payload Too Large"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 500: return "Internal Server Error"
        case 501: return "Not Implemented"
        case 503: return "Service Unavailable"
        case 505: return "HTTP Version Not Supported"
        default: return "Status"
        }
    }
}

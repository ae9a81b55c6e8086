#if canImport(Glibc)
import Glibc
#endif

/// Where an HTTP handler sends its jobs: `http://host[:port]/path[?query]`.
/// Plain HTTP only: the handler is meant to be a local service (a sidecar, a
/// FastAPI app next to the worker); TLS to a remote one belongs in a proxy.
public struct HTTPTarget: Sendable, Equatable, CustomStringConvertible {
    public let host: String
    public let port: UInt16
    /// Path and query, as sent in the request line.
    public let path: String
    public var description: String { "http://\(host.contains(":") ? "[\(host)]" : host):\(port)\(path)" }

    /// Parses an `http://` URL; throws a message naming what is wrong.
    public init(parsing url: String) throws {
        guard url.hasPrefix("http://") else {
            if url.hasPrefix("https://") {
                throw HTTPClientError("\(url): https is not supported for handlers; run the handler next to the worker "
                                      + "over http://, or put a TLS proxy in between")
            }
            throw HTTPClientError("\(url): a handler URL starts with http://")
        }
        let rest = url.dropFirst("http://".count)
        let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<slash]
        var pathPart = String(rest[slash...])
        if pathPart.isEmpty { pathPart = "/" } else if pathPart.hasPrefix("?") { pathPart = "/" + pathPart }
        guard !authority.contains("@") else { throw HTTPClientError("\(url): credentials in a handler URL are not supported") }
        var hostPart = Substring(authority)
        var portText: Substring?
        if hostPart.hasPrefix("[") {
            guard let close = hostPart.firstIndex(of: "]") else { throw HTTPClientError("\(url): an IPv6 host needs a closing ]") }
            let after = hostPart[hostPart.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty {
                throw HTTPClientError("\(url): unexpected text after the host")
            }
            hostPart = hostPart[hostPart.index(after: hostPart.startIndex)..<close]
        } else if let colon = hostPart.lastIndex(of: ":") {
            portText = hostPart[hostPart.index(after: colon)...]
            hostPart = hostPart[..<colon]
        }
        guard !hostPart.isEmpty else { throw HTTPClientError("\(url): no host") }
        var port: UInt16 = 80
        if let portText {
            guard let p = UInt16(portText), p > 0 else { throw HTTPClientError("\(url): the port must be 1 to 65535") }
            port = p
        }
        guard pathPart.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw HTTPClientError("\(url): the path must be printable ASCII without spaces (percent-encode the rest)")
        }
        host = String(hostPart)
        self.port = port
        path = pathPart
    }
}

public struct HTTPClientError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One HTTP/1.1 request on a connection of its own (`Connection: close`),
/// blocking, with poll(2) so that it gives up at a deadline or when told to
/// stop. The response's body is handed over as it arrives (streamed
/// responses), de-chunked.
public enum HTTPClient {
    public struct Head {
        public var status: Int
        /// Header names in lower case; a repeated header keeps its last value.
        public var headers: [String: String]
    }

    /// Longest response head read.
    static let maxHeadBytes = 64 * 1024

    /// Sends `POST` with `body`, calls `onHead` once and `onBody` with each
    /// piece of the body. `deadline` is monotonic ms; `stopped` is asked
    /// between reads (at least every 100 ms) and ends the exchange.
    public static func post(_ target: HTTPTarget, headers: [(String, String)], body: [UInt8], deadline: Int64,
                            stopped: () -> Bool, onHead: (Head) -> Void, onBody: ([UInt8]) -> Void) throws {
        let fd = try connect(target, deadline: deadline, stopped: stopped)
        defer { Glibc.close(fd) }
        var request = "POST \(target.path) HTTP/1.1\r\nHost: \(target.host):\(target.port)\r\nConnection: close\r\n"
            + "Content-Length: \(body.count)\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        var out = Array(request.utf8)
        out += body
        try sendAll(fd, out, deadline: deadline, stopped: stopped)
        try receive(fd, deadline: deadline, stopped: stopped, onHead: onHead, onBody: onBody)
    }

    private static func wait(_ fd: Int32, events: Int16, deadline: Int64, stopped: () -> Bool) throws {
        while true {
            if stopped() { throw HTTPClientError("stopped") }
            let left = deadline - Clock.monotonicMillis()
            if left <= 0 { throw HTTPClientError("timed out") }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let n = poll(&p, 1, Int32(min(left, 100)))
            if n > 0 { return }
            if n < 0 && errno != EINTR { throw HTTPClientError("poll failed: \(String(cString: strerror(errno)))") }
        }
    }

    private static func connect(_ target: HTTPTarget, deadline: Int64, stopped: () -> Bool) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(target.host, String(target.port), &hints, &list)
        guard rc == 0, let first = list else {
            throw HTTPClientError("cannot resolve \(target.host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let ai = node {
            node = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), ai.pointee.ai_protocol)
            if fd < 0 { lastError = String(cString: strerror(errno)); continue }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            if Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 { return fd }
            if errno == EINPROGRESS {
                do {
                    try wait(fd, events: Int16(POLLOUT), deadline: deadline, stopped: stopped)
                } catch {
                    Glibc.close(fd)
                    throw error
                }
                var err: Int32 = 0
                var len = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
                if err == 0 { return fd }
                lastError = String(cString: strerror(err))
            } else {
                lastError = String(cString: strerror(errno))
            }
            Glibc.close(fd)
        }
        throw HTTPClientError("cannot connect to \(target): \(lastError)")
    }

    private static func sendAll(_ fd: Int32, _ bytes: [UInt8], deadline: Int64, stopped: () -> Bool) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n > 0 { sent += n; continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                try wait(fd, events: Int16(POLLOUT), deadline: deadline, stopped: stopped)
                continue
            }
            throw HTTPClientError("sending the request failed: \(String(cString: strerror(errno)))")
        }
    }

    private static func receive(_ fd: Int32, deadline: Int64, stopped: () -> Bool, onHead: (Head) -> Void,
                                onBody: ([UInt8]) -> Void) throws {
        var buffer: [UInt8] = []
        var head: Head?
        var body = BodyDecoder()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            // Also while data keeps coming: an endless stream still ends at the deadline.
            if stopped() { throw HTTPClientError("stopped") }
            if Clock.monotonicMillis() >= deadline { throw HTTPClientError("timed out") }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR {
                    try wait(fd, events: Int16(POLLIN), deadline: deadline, stopped: stopped)
                    continue
                }
                throw HTTPClientError("reading the response failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 {
                guard head != nil else { throw HTTPClientError("the connection closed before a response") }
                try body.finish()
                return
            }
            if head == nil {
                buffer += chunk[0..<n]
                guard let end = HTTPClient.headEnd(buffer) else {
                    if buffer.count > maxHeadBytes { throw HTTPClientError("response head over \(maxHeadBytes) bytes") }
                    continue
                }
                let parsed = try parseHead(Array(buffer[..<end]))
                if parsed.status < 200 {
                    // An interim response (100 Continue, 103 Early Hints): the real one follows.
                    buffer = Array(buffer[(end + 4)...])
                    continue
                }
                head = parsed
                onHead(parsed)
                body = try BodyDecoder(parsed)
                let rest = Array(buffer[(end + 4)...])
                buffer = []
                if try body.feed(rest, onBody) { return }
            } else if try body.feed(Array(chunk[0..<n]), onBody) {
                return
            }
        }
    }

    static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4) where bytes[i] == 0x0D && bytes[i + 1] == 0x0A && bytes[i + 2] == 0x0D && bytes[i + 3] == 0x0A {
            return i
        }
        return nil
    }

    static func parseHead(_ bytes: [UInt8]) throws -> Head {
        let text = String(decoding: bytes, as: UTF8.self)
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let statusLine = lines.removeFirst()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]), (100...599).contains(status) else {
            throw HTTPClientError("not an HTTP/1.x response: \(statusLine.prefix(80))")
        }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = String(line[line.index(after: colon)...]).trimmingCharacters(in: " \t")
        }
        return Head(status: status, headers: headers)
    }
}

/// Turns a response body as received into its content: by Content-Length,
/// chunked, or up to the close.
struct BodyDecoder {
    private enum Mode { case length(Int), chunked, untilClose, none }
    private var mode = Mode.none
    private var pending: [UInt8] = []
    /// In chunked mode: bytes left in the current chunk (nil: a size line is next).
    private var chunkLeft: Int?
    private var done = false

    init() {}

    init(_ head: HTTPClient.Head) throws {
        if head.status == 204 || head.status == 304 || head.status < 200 {
            mode = .none
        } else if head.headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            mode = .chunked
        } else if let text = head.headers["content-length"] {
            guard let n = Int(text), n >= 0 else { throw HTTPClientError("bad Content-Length: \(text.prefix(40))") }
            mode = .length(n)
        } else {
            mode = .untilClose
        }
    }

    /// Feeds bytes; true once the body is complete.
    mutating func feed(_ bytes: [UInt8], _ onBody: ([UInt8]) -> Void) throws -> Bool {
        switch mode {
        case .none:
            return true
        case .untilClose:
            if !bytes.isEmpty { onBody(bytes) }
            return false
        case .length(let left):
            let take = min(left, bytes.count)
            if take > 0 { onBody(Array(bytes[..<take])) }
            mode = .length(left - take)
            return left - take == 0
        case .chunked:
            pending += bytes
            while !done {
                if let left = chunkLeft {
                    if left > 0 {
                        guard !pending.isEmpty else { return false }
                        let take = min(left, pending.count)
                        onBody(Array(pending[..<take]))
                        pending.removeFirst(take)
                        chunkLeft = left - take
                        continue
                    }
                    // The CRLF after a chunk's data.
                    guard pending.count >= 2 else { return false }
                    pending.removeFirst(2)
                    chunkLeft = nil
                } else {
                    guard let nl = pending.firstIndex(of: 0x0A) else {
                        if pending.count > 1024 { throw HTTPClientError("chunk size line too long") }
                        return false
                    }
                    let line = String(decoding: pending[..<nl], as: UTF8.self).trimmingCharacters(in: "\r ")
                    pending.removeFirst(nl + 1)
                    let sizeText = (line.split(separator: ";").first.map(String.init) ?? "").trimmingCharacters(in: " \t")
                    guard let size = Int(sizeText, radix: 16), size >= 0 else {
                        throw HTTPClientError("bad chunk size: \(line.prefix(40))")
                    }
                    if size == 0 { done = true } else { chunkLeft = size }
                }
            }
            return true
        }
    }

    /// The connection closed: fine only for a body delimited by the close.
    func finish() throws {
        switch mode {
        case .untilClose, .none: return
        case .length(let left) where left == 0: return
        case .chunked where done: return
        default: throw HTTPClientError("the connection closed before the end of the response body")
        }
    }
}

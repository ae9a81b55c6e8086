import Shared
#if canImport(Glibc)
import Glibc
#endif

/// A minimal keep-alive HTTP/1.1 client over a blocking socket: just enough
/// to load the API without the client becoming the bottleneck.
final class BenchHTTPClient {
    private let fd: Int32
    private var buffer: [UInt8] = []

    init(host: String, port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr(host)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { throw ConfigError("connect \(host):\(port): \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close(fd) }

    /// Sends one request and returns (status, body).
    func request(_ method: String, _ path: String, body: [UInt8] = []) throws -> (Int, [UInt8]) {
        var req = Array("\(method) \(path) HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
        req += body
        try req.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = write(fd, raw.baseAddress! + off, raw.count - off)
                guard n > 0 else { throw ConfigError("write failed") }
                off += n
            }
        }
        return try readResponse()
    }

    /// Reads one response. Works on bytes with one reused read buffer: the
    /// client shares the cores with what it measures, so it must stay cheap.
    private func readResponse() throws -> (Int, [UInt8]) {
        var scanned = 0
        while true {
            if let end = headerEnd(from: scanned) {
                let head = buffer[..<end]
                // "HTTP/1.1 201 Created": the three digits after the first space.
                guard let space = head.firstIndex(of: 0x20), space + 3 < end else { throw ConfigError("malformed status line") }
                let status = head[(space + 1)...(space + 3)].reduce(0) { $0 * 10 + Int($1) - 48 }
                let length = contentLength(head)
                while buffer.count < end + 4 + length { try fill() }
                let body = Array(buffer[(end + 4)..<(end + 4 + length)])
                buffer.removeFirst(end + 4 + length)
                return (status, body)
            }
            scanned = max(0, buffer.count - 3)
            try fill()
        }
    }

    /// The Content-Length header's value (0 when absent).
    private func contentLength(_ head: ArraySlice<UInt8>) -> Int {
        let name = Array("content-length:".utf8)
        var i = head.startIndex
        while i < head.endIndex {
            let lineEnd = head[i...].firstIndex(of: 13) ?? head.endIndex
            let line = head[i..<lineEnd]
            if line.count > name.count && zip(line, name).allSatisfy({ ($0 | 0x20) == $1 || $0 == $1 }) {
                return line.dropFirst(name.count).reduce(0) { ($1 >= 48 && $1 <= 57) ? $0 * 10 + Int($1) - 48 : $0 }
            }
            i = lineEnd + 2
        }
        return 0
    }

    private func headerEnd(from start: Int) -> Int? {
        guard buffer.count >= 4 else { return nil }
        var i = start
        while i <= buffer.count - 4 {
            if buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 { return i }
            i += 1
        }
        return nil
    }

    private var chunk = [UInt8](repeating: 0, count: 65536)

    private func fill() throws {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { throw ConfigError("connection closed by the server") }
        buffer.append(contentsOf: chunk[..<n])
    }
}

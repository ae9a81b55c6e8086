import CLibevent

/// Reads a `Transfer-Encoding: chunked` request body (RFC 9112 §7.1) from a
/// connection's input buffer as it arrives, chunk by chunk, draining what it
/// consumed, so that a body sent in many small chunks never fills the buffer.
/// Chunk extensions and trailer fields are read and dropped.
struct ChunkedBody {
    private enum State {
        case size
        case data(remaining: Int)
        case dataEnd
        case trailers
        case done
    }

    private var state = State.size
    private(set) var body: [UInt8] = []
    let maxBodyBytes: Int
    /// Longest chunk-size line or trailer line accepted.
    static let maxLineBytes = 4096

    init(maxBodyBytes: Int) { self.maxBodyBytes = maxBodyBytes }

    var isComplete: Bool { if case .done = state { return true } else { return false } }

    /// Consumes what it can; throws for a malformed body or one over the limit.
    mutating func consume(_ input: OpaquePointer) throws {
        while true {
            switch state {
            case .done:
                return
            case .size:
                guard let line = try ChunkedBody.line(input) else { return }
                guard let size = ChunkedBody.chunkSize(line) else {
                    throw HTTPHeadParser.bad("malformed chunk size in a chunked body")
                }
                if size == 0 {
                    state = .trailers
                } else {
                    guard body.count + size <= maxBodyBytes else {
                        throw HTTPParseError(status: 413, code: "payload_too_large",
                                             message: "chunked request body is over the limit of \(maxBodyBytes) bytes")
                    }
                    state = .data(remaining: size)
                }
            case .data(let remaining):
                let available = evbuffer_get_length(input)
                guard available > 0 else { return }
                let take = min(remaining, available)
                let start = body.count
                body += [UInt8](repeating: 0, count: take)
                _ = body.withUnsafeMutableBytes { evbuffer_remove(input, $0.baseAddress! + start, take) }
                state = remaining == take ? .dataEnd : .data(remaining: remaining - take)
            case .dataEnd:
                guard evbuffer_get_length(input) >= 2 else { return }
                var two: (UInt8, UInt8) = (0, 0)
                _ = withUnsafeMutableBytes(of: &two) { evbuffer_remove(input, $0.baseAddress, 2) }
                guard two == (0x0D, 0x0A) else { throw HTTPHeadParser.bad("chunk data is not followed by CRLF") }
                state = .size
            case .trailers:
                guard let line = try ChunkedBody.line(input) else { return }
                if line.isEmpty { state = .done }
            }
        }
    }

    /// The size of a chunk-size line: hex digits only (no sign, no spaces
    /// inside: a proxy must not read the size another way), then optional
    /// whitespace and `;extensions`. Leading zeros are allowed; a size over
    /// 2^40 is not (it is far over any body limit anyway).
    static func chunkSize(_ line: [UInt8]) -> Int? {
        var size = 0
        var digits = 0
        var i = 0
        while i < line.count, let v = hexDigit(line[i]) {
            if digits > 0 || v > 0 { size = size * 16 + v }
            if size > 1 << 40 { return nil }
            digits += 1
            i += 1
        }
        guard digits > 0 else { return nil }
        while i < line.count, line[i] == 0x20 || line[i] == 0x09 { i += 1 }
        guard i == line.count || line[i] == UInt8(ascii: ";") else { return nil }
        return size
    }

    private static func hexDigit(_ b: UInt8) -> Int? {
        switch b {
        case 0x30...0x39: return Int(b - 0x30)
        case 0x41...0x46: return Int(b - 0x41 + 10)
        case 0x61...0x66: return Int(b - 0x61 + 10)
        default: return nil
        }
    }

    /// The next CRLF-terminated line (without CRLF), drained; nil when not all here yet.
    private static func line(_ input: OpaquePointer) throws -> [UInt8]? {
        let found = "\r\n".withCString { evbuffer_search(input, $0, 2, nil) }
        guard found.pos >= 0 else {
            if evbuffer_get_length(input) > maxLineBytes { throw HTTPHeadParser.bad("chunk-size or trailer line too long") }
            return nil
        }
        guard found.pos <= maxLineBytes else { throw HTTPHeadParser.bad("chunk-size or trailer line too long") }
        var line = [UInt8](repeating: 0, count: found.pos)
        if found.pos > 0 { _ = line.withUnsafeMutableBytes { evbuffer_remove(input, $0.baseAddress, found.pos) } }
        evbuffer_drain(input, 2)
        return line
    }
}

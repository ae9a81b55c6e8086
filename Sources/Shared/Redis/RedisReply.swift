import CHiredis

/// A Redis reply, copied out of hiredis at once so that no pointer outlives the
/// callback that received it.
public indirect enum RedisReply: Equatable, Sendable {
    case status(String)
    case error(String)
    case integer(Int64)
    case bulk(String)
    case null
    case array([RedisReply])

    init(_ r: UnsafePointer<redisReply>) {
        switch r.pointee.type {
        case REDIS_REPLY_STATUS: self = .status(RedisReply.text(r))
        case REDIS_REPLY_ERROR: self = .error(RedisReply.text(r))
        case REDIS_REPLY_INTEGER: self = .integer(r.pointee.integer)
        case REDIS_REPLY_STRING: self = .bulk(RedisReply.text(r))
        case REDIS_REPLY_ARRAY:
            var items: [RedisReply] = []
            items.reserveCapacity(Int(r.pointee.elements))
            for i in 0..<Int(r.pointee.elements) {
                if let e = r.pointee.element[i] { items.append(RedisReply(e)) } else { items.append(.null) }
            }
            self = .array(items)
        default: self = .null
        }
    }

    private static func text(_ r: UnsafePointer<redisReply>) -> String {
        guard let p = r.pointee.str else { return "" }
        let bytes = UnsafeRawBufferPointer(start: p, count: Int(r.pointee.len))
        return String(decoding: bytes, as: UTF8.self)
    }

    public var string: String? {
        switch self {
        case .bulk(let s), .status(let s): return s
        case .integer(let i): return String(i)
        default: return nil
        }
    }

    public var int: Int64? {
        switch self {
        case .integer(let i): return i
        case .bulk(let s), .status(let s): return Int64(s)
        default: return nil
        }
    }

    public var array: [RedisReply]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var errorMessage: String? {
        if case .error(let e) = self { return e }
        return nil
    }

    /// A flat array of field/value pairs (HGETALL) as a dictionary.
    public var hash: [String: String] {
        guard let items = array else { return [:] }
        var out: [String: String] = [:]
        out.reserveCapacity(items.count / 2)
        var i = 0
        while i + 1 < items.count {
            if let k = items[i].string { out[k] = items[i + 1].string ?? "" }
            i += 2
        }
        return out
    }
}

/// Why a Redis call did not produce a reply.
public enum RedisError: Error, CustomStringConvertible, Equatable {
    /// The connection is down or broke during the call (the command may or may not have run).
    case connection(String)
    /// Redis answered with an error reply.
    case server(String)
    /// No reply within the command timeout.
    case timeout

    public var description: String {
        switch self {
        case .connection(let m): return "redis connection: \(m)"
        case .server(let m): return "redis error: \(m)"
        case .timeout: return "redis timed out"
        }
    }
}

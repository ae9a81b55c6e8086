/// Where Redis is: parsed from `redis://[[user]:password@]host[:port][/db]`.
public struct RedisEndpoint: Equatable, Sendable, CustomStringConvertible {
    public var host: String = "127.0.0.1"
    public var port: Int = 6379
    public var username: String? = nil
    public var password: String? = nil
    public var database: Int = 0

    public init() {}

    /// The URL without its password, for logs.
    public var description: String {
        "redis://\(password == nil ? "" : "***@")\(host):\(port)/\(database)"
    }

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(url: String) throws {
        guard url.hasPrefix("redis://") else {
            throw ParseError(description: "must start with redis:// (TLS is not supported by hiredis 0.14)")
        }
        var rest = Substring(url.dropFirst("redis://".count))
        if let at = rest.lastIndex(of: "@") {
            let auth = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = auth.firstIndex(of: ":") {
                let user = auth[..<colon]
                username = user.isEmpty ? nil : RedisEndpoint.percentDecoded(user)
                password = RedisEndpoint.percentDecoded(auth[auth.index(after: colon)...])
            } else if !auth.isEmpty {
                password = RedisEndpoint.percentDecoded(auth)
            }
        }
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !db.isEmpty {
                guard let n = Int(db), n >= 0 else { throw ParseError(description: "database '\(db)' is not a number ≥ 0") }
                database = n
            }
        }
        if let colon = rest.lastIndex(of: ":") {
            let portText = rest[rest.index(after: colon)...]
            guard let p = Int(portText), (1...65535).contains(p) else {
                throw ParseError(description: "port '\(portText)' is not a number from 1 to 65535")
            }
            port = p
            rest = rest[..<colon]
        }
        if !rest.isEmpty { host = String(rest) }
    }

    static func percentDecoded(_ s: Substring) -> String {
        var bytes: [UInt8] = []
        var it = Array(s.utf8)[...]
        while let b = it.popFirst() {
            if b == 0x25, it.count >= 2, let v = UInt8(String(decoding: it.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(v)
                it = it.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Commands to send right after connecting (AUTH, SELECT).
    var handshake: [[String]] {
        var cmds: [[String]] = []
        if let password {
            cmds.append(username.map { ["AUTH", $0, password] } ?? ["AUTH", password])
        }
        if database != 0 { cmds.append(["SELECT", String(database)]) }
        return cmds
    }
}

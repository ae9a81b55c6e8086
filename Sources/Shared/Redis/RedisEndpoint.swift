/// Where Redis is, parsed from a URL as RFC 3986 reads it:
/// - `redis://[user[:password]@]host[:port][/db][?db=N]`, host a name, an
///   IPv4 address or a bracketed IPv6 address (`redis://[::1]:6379`);
/// - `redis://:password@host` for a password without a user (Redis' `default` user);
/// - `rediss://...` as `redis://`, over TLS (see `RedisTLS` and `TLSRelay`);
/// - `unix://[user[:password]@]/path/to/redis.sock[?db=N]` for a Unix socket;
/// - `redis+sentinel://[user[:password]@]host1[:port],host2[:port],.../master[/db]`:
///   the primary of `master`, asked of the sentinels (port 26379 by default)
///   at every connect; the user and password are the data nodes' (the
///   sentinels' own come from SPOOL_SENTINEL_USERNAME / _PASSWORD);
/// - `redis+cluster://[user[:password]@]host1[:port],host2[:port],...`: a Redis
///   Cluster, found from any of these seed nodes (port 6379 by default); every
///   command goes to the node that serves its key's slot (ClusterTopology).
/// A user without a password (`redis://app@host`) is a user, not a password:
/// it authenticates as that user with an empty password, which an ACL user
/// marked `nopass` accepts.
public struct RedisEndpoint: Equatable, Sendable, CustomStringConvertible {
    public var host: String = "127.0.0.1"
    public var port: Int = 6379
    /// A Unix socket path; when set, host and port are not used.
    public var socketPath: String? = nil
    public var username: String? = nil
    public var password: String? = nil
    public var database: Int = 0
    /// Set for `redis+sentinel://`: host and port then name the primary found
    /// last, and are found again at every connect.
    public var sentinel: Sentinel? = nil
    /// Set for `redis+cluster://`: the seed nodes. Host and port then name
    /// the first seed; connections route each command by its key's slot.
    public var cluster: [Node]? = nil
    /// Set for `rediss://`: TLS to host:port, through the in-process relay.
    public var tls: RedisTLS? = nil

    /// One `host:port` of a list (sentinels, cluster seeds).
    public struct Node: Hashable, Sendable {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var address: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    public struct Sentinel: Equatable, Sendable {
        public typealias Node = RedisEndpoint.Node
        public var nodes: [Node]
        public var masterName: String
        /// The sentinels' own credentials (they may differ from the data nodes').
        public var username: String? = nil
        public var password: String? = nil

        /// A connection to each sentinel, with their credentials, each
        /// command bounded by `timeoutMs`.
        func connections(timeoutMs: Int) -> [RedisConnection] {
            nodes.map { node in
                var at = RedisEndpoint()
                at.host = node.host
                at.port = node.port
                at.username = username
                at.password = password
                return RedisConnection(endpoint: at, commandTimeoutMs: timeoutMs, requiresPrimary: false)
            }
        }
    }

    public init() {}

    /// URL text as given, with its password replaced by `***`: for errors
    /// about a URL that may not even parse.
    public static func redacted(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@") else { return text }
        var start = text.startIndex
        if let colon = text.firstIndex(of: ":"), text[colon...].hasPrefix("://") {
            start = text.index(colon, offsetBy: 3)
        }
        guard start <= at else { return text }
        let userinfo = text[start..<at]
        let shown = userinfo.firstIndex(of: ":").map { userinfo[..<$0] + ":***" } ?? userinfo
        return String(text[..<start]) + shown + String(text[at...])
    }

    /// The URL without its password, for logs.
    public var description: String {
        var auth = ""
        if let username { auth = RedisEndpoint.hideControl(username) + (password == nil ? "" : ":***") + "@" }
        else if password != nil { auth = ":***@" }
        if let cluster {
            return "redis+cluster://\(auth)\(cluster.map(\.address).joined(separator: ","))"
        }
        if let sentinel {
            let nodes = sentinel.nodes.map(\.address)
            return "redis+sentinel://\(auth)\(nodes.joined(separator: ","))/\(RedisEndpoint.hideControl(sentinel.masterName))/\(database)"
        }
        if let socketPath { return "unix://\(auth)\(socketPath)?db=\(database)" }
        let shownHost = host.contains(":") ? "[\(host)]" : host
        return "\(tls == nil ? "redis" : "rediss")://\(auth)\(shownHost):\(port)/\(database)"
    }

    /// The address alone, for messages about connecting.
    public var address: String {
        if let socketPath { return socketPath }
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    public struct ParseError: Error, CustomStringConvertible {
        public let description: String
    }

    public static let urlForms = "redis://[user[:password]@]host[:port][/db], rediss://... (TLS), unix://[user[:password]@]/path/redis.sock[?db=N] "
        + ", redis+sentinel://[user[:password]@]host[:port],host[:port],.../master[/db] "
        + "or redis+cluster://[user[:password]@]host[:port],host[:port],..."

    public init(url: String) throws {
        let isUnix: Bool
        var rest: Substring
        if url.hasPrefix("redis+sentinel://") {
            self = try RedisEndpoint(sentinelURL: url.dropFirst("redis+sentinel://".count))
            return
        }
        if url.hasPrefix("redis+cluster://") {
            self = try RedisEndpoint(clusterURL: url.dropFirst("redis+cluster://".count))
            return
        }
        if url.hasPrefix("redis://") {
            isUnix = false
            rest = url.dropFirst("redis://".count)
        } else if url.hasPrefix("unix://") {
            isUnix = true
            rest = url.dropFirst("unix://".count)
        } else if url.hasPrefix("rediss://") {
            isUnix = false
            tls = RedisTLS()
            rest = url.dropFirst("rediss://".count)
        } else if url.hasPrefix("rediss+") {
            throw ParseError(description: "TLS is supported for one Redis (rediss://host:port), not yet behind Sentinel or on a Cluster")
        } else {
            throw ParseError(description: "must be \(RedisEndpoint.urlForms)")
        }
        guard !rest.contains(where: { $0 == " " || $0 == "#" }) else {
            throw ParseError(description: "contains a space or '#'; percent-encode such characters (%20, %23)")
        }
        if !isUnix { rest = try takeUserInfo(rest) }
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        // A socket path holds '/': its userinfo ends at the last '@' before the path.
        if isUnix, let at = rest[..<(rest.firstIndex(of: "/") ?? rest.endIndex)].lastIndex(of: "@") {
            try parseUserInfo(rest[..<at])
            rest = rest[rest.index(after: at)...]
        }
        if isUnix {
            guard rest.first == "/", rest.count > 1 else {
                throw ParseError(description: "unix:// needs an absolute socket path, e.g. unix:///run/redis/redis.sock")
            }
            socketPath = try RedisEndpoint.decoded(rest, "socket path")
        } else {
            try parseHostPortDatabase(rest)
        }
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let value = kv.count > 1 ? kv[1] : ""
            switch kv[0] {
            case "db":
                guard let n = Int(value), n >= 0 else { throw ParseError(description: "db '\(value)' is not a number ≥ 0") }
                database = n
            default:
                throw ParseError(description: "unknown URL parameter '\(kv[0])'; only db is understood")
            }
        }
    }

    /// `[user[:password]@]host[:port],host[:port],.../master[/db][?db=N]`
    private init(sentinelURL text: Substring) throws {
        guard !text.contains(where: { $0 == " " || $0 == "#" }) else {
            throw ParseError(description: "contains a space or '#'; percent-encode such characters (%20, %23)")
        }
        var rest = try takeUserInfo(text)
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        guard let slash = rest.firstIndex(of: "/") else {
            throw ParseError(description: "redis+sentinel:// needs the master's name after the sentinels, e.g. "
                             + "redis+sentinel://s1:26379,s2:26379/mymaster")
        }
        var path = rest[rest.index(after: slash)...]
        let authority = rest[..<slash]
        let nodes = try RedisEndpoint.nodeList(authority, defaultPort: 26379, kind: "sentinel")
        if let dbSlash = path.firstIndex(of: "/") {
            let db = path[path.index(after: dbSlash)...]
            path = path[..<dbSlash]
            if !db.isEmpty {
                guard let n = Int(db), n >= 0 else { throw ParseError(description: "database '\(db)' is not a number ≥ 0") }
                database = n
            }
        }
        let master = try RedisEndpoint.decoded(path, "master name")
        guard !master.isEmpty else { throw ParseError(description: "the master's name is empty") }
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv[0] == "db", kv.count > 1, let n = Int(kv[1]), n >= 0 else {
                throw ParseError(description: "unknown or bad URL parameter '\(pair)'; only db=N is understood")
            }
            database = n
        }
        sentinel = Sentinel(nodes: nodes, masterName: master)
        host = nodes[0].host
        port = 6379
    }

    /// `[user[:password]@]host[:port],host[:port],...`: Cluster has one
    /// database only, so no path or query is accepted.
    private init(clusterURL text: Substring) throws {
        guard !text.contains(where: { $0 == " " || $0 == "#" }) else {
            throw ParseError(description: "contains a space or '#'; percent-encode such characters (%20, %23)")
        }
        let authority = try takeUserInfo(text)
        if authority.contains("/") || authority.contains("?") {
            throw ParseError(description: "redis+cluster:// takes only seed nodes (host:port,host:port,...): "
                             + "Redis Cluster has one database, so no /db or parameter")
        }
        let nodes = try RedisEndpoint.nodeList(authority, defaultPort: 6379, kind: "cluster seed")
        cluster = nodes
        host = nodes[0].host
        port = nodes[0].port
    }

    /// A comma-separated list of `host[:port]`.
    private static func nodeList(_ text: Substring, defaultPort: Int, kind: String) throws -> [Node] {
        var nodes: [Node] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            var node = RedisEndpoint()
            node.port = defaultPort
            guard !part.isEmpty else { throw ParseError(description: "an empty \(kind) address in the list") }
            try node.parseHostPortDatabase(part)
            if node.database != 0 { throw ParseError(description: "a \(kind) address takes no database: '\(part)'") }
            nodes.append(Node(host: node.host, port: node.port))
        }
        return nodes
    }

    /// Makes this endpoint (from a `redis://` URL: credentials, database) find
    /// its primary through sentinels given apart (SPOOL_SENTINELS,
    /// SPOOL_SENTINEL_MASTER), as `redis+sentinel://` does.
    public mutating func useSentinels(_ list: String, master: String) throws {
        let nodes = try RedisEndpoint.nodeList(Substring(list.filter { !$0.isWhitespace }), defaultPort: 26379,
                                               kind: "sentinel")
        guard !master.isEmpty else { throw ParseError(description: "the master's name is empty") }
        sentinel = Sentinel(nodes: nodes, masterName: master)
        host = nodes[0].host
        port = 6379
    }

    /// The endpoint of one node of a cluster: this endpoint's credentials,
    /// that node's address.
    public func clusterNode(_ node: Node) -> RedisEndpoint {
        var at = self
        at.cluster = nil
        at.host = node.host
        at.port = node.port
        return at
    }

    /// Splits off the user info first, at the URL's last '@' (a password may
    /// hold '/', '?' or '@' unencoded: be lenient), so that no later error
    /// about the rest of the URL can quote a piece of the password.
    private mutating func takeUserInfo(_ text: Substring) throws -> Substring {
        guard let at = text.lastIndex(of: "@") else { return text }
        try parseUserInfo(text[..<at])
        return text[text.index(after: at)...]
    }

    /// `user[:password]` before the '@': a user alone is a user, not a password.
    private mutating func parseUserInfo(_ auth: Substring) throws {
        if let colon = auth.firstIndex(of: ":") {
            let user = auth[..<colon]
            username = user.isEmpty ? nil : try RedisEndpoint.decoded(user, "user")
            password = try RedisEndpoint.decoded(auth[auth.index(after: colon)...], "password")
        } else if !auth.isEmpty {
            username = try RedisEndpoint.decoded(auth, "user")
        }
    }

    private mutating func parseHostPortDatabase(_ text: Substring) throws {
        var rest = text
        if let slash = rest.firstIndex(of: "/") {
            let db = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !db.isEmpty {
                guard let n = Int(db), n >= 0 else { throw ParseError(description: "database '\(db)' is not a number ≥ 0") }
                database = n
            }
        }
        var portText: Substring?
        if rest.first == "[" {
            guard let close = rest.firstIndex(of: "]") else { throw ParseError(description: "'[' of an IPv6 address is not closed") }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            let after = rest[rest.index(after: close)...]
            if !after.isEmpty {
                guard after.first == ":" else { throw ParseError(description: "expected ':port' after ']'") }
                portText = after.dropFirst()
            }
        } else {
            if let colon = rest.lastIndex(of: ":") {
                guard rest.firstIndex(of: ":") == colon else {
                    throw ParseError(description: "an IPv6 address must be in brackets, e.g. redis://[::1]:6379")
                }
                portText = rest[rest.index(after: colon)...]
                rest = rest[..<colon]
            }
            if !rest.isEmpty { host = try RedisEndpoint.decoded(rest, "host") }
        }
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else {
                throw ParseError(description: "port '\(portText)' is not a number from 1 to 65535")
            }
            port = p
        }
        guard !host.isEmpty else { throw ParseError(description: "the host is empty") }
    }

    /// Percent-decodes one part of the URL; a bad escape or a result that is
    /// not UTF-8 is an error naming the part (never a silently changed secret).
    static func decoded(_ s: Substring, _ part: String) throws -> String {
        guard let text = PercentDecoding.decode(s) else {
            throw ParseError(description: "the \(part) has a malformed %-escape or is not UTF-8")
        }
        return text
    }

    private static func hideControl(_ s: String) -> String {
        String(s.unicodeScalars.map { $0.value < 0x20 ? "?" : Character($0) })
    }

    /// What a refused handshake command says, for both kinds of connection;
    /// AUTH is named without its arguments (they hold the password).
    func handshakeFailure(_ command: [String], _ reply: String) -> String {
        "\(command[0] == "AUTH" ? "AUTH" : command.joined(separator: " ")) failed on \(address): \(reply)"
    }

    /// Commands to send right after connecting (AUTH, SELECT).
    var handshake: [[String]] {
        var cmds: [[String]] = []
        if let username {
            cmds.append(["AUTH", username, password ?? ""])
        } else if let password {
            cmds.append(["AUTH", password])
        }
        if database != 0 { cmds.append(["SELECT", String(database)]) }
        return cmds
    }
}

/// Which of Redis Cluster's 16384 hash slots a key belongs to, and which key
/// of a command decides where the command goes.
public enum ClusterSlot {
    public static let count = 16384

    /// CRC16 (XMODEM: polynomial 0x1021, initial value 0) of the key's hash
    /// tag, modulo 16384. The hash tag is the part between the first `{` and
    /// the next `}` when that part is not empty, else the whole key: this is
    /// what keeps every key of a queue (`spool:{queue}:...`) in one slot.
    public static func of(_ key: String) -> Int {
        var utf8 = Array(key.utf8)
        if let open = utf8.firstIndex(of: UInt8(ascii: "{")),
           let close = utf8[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            utf8 = Array(utf8[(open + 1)..<close])
        }
        var crc: UInt16 = 0
        for byte in utf8 {
            crc = (crc << 8) ^ table[Int(UInt8(crc >> 8) ^ byte)]
        }
        return Int(crc) & (count - 1)
    }

    private static let table: [UInt16] = (0..<256).map { n in
        var crc = UInt16(n) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }

    /// Commands that name no key: they go to any node (WAIT is handled by
    /// the connection, which knows where its writes went).
    static let keyless: Set<String> = ["PING", "ROLE", "INFO", "WAIT", "CLUSTER", "SCRIPT", "CONFIG", "TIME", "DBSIZE",
                                       "FLUSHALL", "FLUSHDB", "PUBLISH", "SUBSCRIBE", "ASKING", "AUTH", "SELECT",
                                       "CLIENT", "MEMORY", "COMMAND", "HELLO", "READONLY", "READWRITE"]

    /// The key that decides a command's slot, or nil for a command with no
    /// key. A script's is its first KEYS entry (Spool's scripts keep all of
    /// theirs in one slot); every other command Spool sends takes its key
    /// first. A command with several keys (BLPOP) must keep them in one slot.
    public static func routingKey(_ args: [String]) -> String? {
        guard args.count > 1 else { return nil }
        // Spool names every command in capitals.
        let name = args[0]
        if name == "EVALSHA" || name == "EVAL" || name == "EVALSHA_RO" || name == "EVAL_RO" {
            guard args.count > 3, let n = Int(args[2]), n > 0 else { return nil }
            return args[3]
        }
        return keyless.contains(name) ? nil : args[1]
    }

    /// A script call (EVAL, EVALSHA) with the slot guard of its first key's
    /// hash tag appended to its KEYS (see KeySchema.slotGuard); any other
    /// command unchanged.
    static func withSlotGuard(_ args: [String]) -> [String] {
        guard args.count > 3, args[0] == "EVALSHA" || args[0] == "EVAL", let n = Int(args[2]), n > 0 else { return args }
        let first = args[3]
        guard let open = first.firstIndex(of: "{"),
              let close = first[first.index(after: open)...].firstIndex(of: "}"),
              close > first.index(after: open) else { return args }
        var guarded = args
        guarded[2] = String(n + 1)
        guarded.insert(String(first[...close]) + ":slot-guard", at: 3 + n)
        return guarded
    }

    /// The slot a command goes to, nil for one with no key.
    public static func of(command args: [String]) -> Int? {
        routingKey(args).map(of)
    }
}

/// A redirection or a refusal that Redis Cluster answers instead of running
/// a command.
enum ClusterReply {
    /// The slot lives on another node for good: refresh the slot map.
    case moved(slot: Int, to: RedisEndpoint.Node)
    /// The slot is being migrated and this key is on the target already:
    /// send `ASKING` then the command to it, once.
    case ask(slot: Int, to: RedisEndpoint.Node)
    /// The cluster cannot serve the command now (a failover, a slot being
    /// migrated with keys on both sides, no quorum): try again shortly.
    case tryAgain(String)

    /// A command follows at most this many redirections in a row; past it
    /// the redirection is waited out like TRYAGAIN (nodes that send a command
    /// back and forth: a slot's new owner told before its old one).
    static let maxRedirects = 5

    /// The wait before the next try after `retries` TRYAGAIN answers (or
    /// tries of a link still connecting): 10, 20, 40 … 200 ms.
    static func retryDelayMs(after retries: Int) -> Int { min(10 << min(retries, 5), 200) }

    /// `reply` read as a redirection or refusal of a command sent to `node`
    /// after `redirects` redirections; nil for any other reply. A redirection
    /// naming no host (`MOVED 3999 :6381`) means `node`'s host.
    init?(_ reply: RedisReply, askedAt node: RedisEndpoint.Node, redirects: Int) {
        guard case .error(let message) = reply else { return nil }
        if message.hasPrefix("TRYAGAIN") || message.hasPrefix("CLUSTERDOWN") {
            self = .tryAgain(message)
            return
        }
        let parts = message.split(separator: " ")
        guard parts.count == 3, parts[0] == "MOVED" || parts[0] == "ASK", let slot = Int(parts[1]),
              let colon = parts[2].lastIndex(of: ":"), let port = Int(parts[2][parts[2].index(after: colon)...])
        else { return nil }
        if redirects >= ClusterReply.maxRedirects {
            self = .tryAgain("redirected too often: \(message)")
            return
        }
        var host = String(parts[2][..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let target = RedisEndpoint.Node(host: host.isEmpty ? node.host : host, port: port)
        self = parts[0] == "MOVED" ? .moved(slot: slot, to: target) : .ask(slot: slot, to: target)
    }
}

import Shared

/// What a token allows. `admin` is everything the others allow, on every
/// client's jobs, plus queue administration.
enum Scope: String, CaseIterable, Sendable {
    /// Enqueue jobs; cancel and retry its own.
    case enqueue
    /// Read its own jobs, its queues and their dead lists.
    case read
    /// Everything on its queues and every client's jobs in them; pause, resume,
    /// delete queues, purge and retry dead jobs; list workers; `/metrics`.
    case admin
    /// `/metrics` only (a Prometheus scraper's token).
    case metrics
}

/// A queue a client may use: a name, `prefix*`, or `*` for every queue.
struct QueuePattern: Equatable, Sendable {
    let text: String
    private let prefix: String
    private let isPrefix: Bool

    init?(_ text: String) {
        self.text = text
        if text.hasSuffix("*") {
            prefix = String(text.dropLast())
            isPrefix = true
            guard prefix.isEmpty || Validation.isValidQueueName(prefix) else { return nil }
        } else {
            prefix = text
            isPrefix = false
            guard Validation.isValidQueueName(text) else { return nil }
        }
    }

    func matches(_ queue: String) -> Bool { isPrefix ? queue.hasPrefix(prefix) : queue == prefix }
}

/// One entry of the auth file: a client, its token's digest and what it may do.
struct AuthClient: Sendable {
    let id: String
    let tokenSHA256: [UInt8]
    let scopes: Set<Scope>
    let queues: [QueuePattern]
    /// Unfinished jobs of this client per queue at most (nil: no limit).
    let maxPending: Int64?

    func has(_ scope: Scope) -> Bool { scopes.contains(scope) || scopes.contains(.admin) }
    var isAdmin: Bool { scopes.contains(.admin) }
    func mayUse(queue: String) -> Bool { queues.contains { $0.matches(queue) } }
}

/// The clients of the auth file (`SPOOL_AUTH_FILE`), parsed and checked:
/// `{"clients": [{"id", "token_sha256", "scopes", "queues", "max_pending"?, "note"?}]}`.
struct AuthTable: Sendable {
    let clients: [AuthClient]

    static let maxClients = 1000
    static let maxFileBytes = 1 << 20
    /// Longer bearer tokens are refused without hashing them.
    static let maxTokenLength = 512

    struct Invalid: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// The client whose token this is, or nil. Every entry is compared, in
    /// constant time, whichever matches: the time taken says nothing about
    /// how close a guess came.
    func client(token: Substring) -> AuthClient? {
        let digest = Secrets.sha256(token.utf8)
        var found: AuthClient?
        for c in clients where Secrets.constantTimeEqual(c.tokenSHA256, digest) { found = c }
        return found
    }

    init(clients: [AuthClient]) { self.clients = clients }

    /// Parses the file's text; every problem names the entry and field.
    init(parsing text: String) throws {
        let root: JSONValue
        do {
            root = try JSONParser.parse(text)
        } catch {
            throw Invalid("not valid JSON: \(error)")
        }
        guard let members = root.objectMembers else { throw Invalid("must be a JSON object with a clients array") }
        for m in members where m.key != "clients" { throw Invalid("\(m.key): unknown field; the file holds only \"clients\"") }
        guard let entries = root["clients"]?.arrayValue else { throw Invalid("clients: must be an array") }
        guard entries.count <= AuthTable.maxClients else {
            throw Invalid("clients: \(entries.count) entries; at most \(AuthTable.maxClients)")
        }
        var clients: [AuthClient] = []
        var ids = Set<String>()
        var digests = Set<[UInt8]>()
        for (i, entry) in entries.enumerated() {
            let client = try AuthTable.client(entry, at: "clients[\(i)]")
            guard ids.insert(client.id).inserted else { throw Invalid("clients[\(i)].id: '\(client.id)' is used twice") }
            guard digests.insert(client.tokenSHA256).inserted else {
                throw Invalid("clients[\(i)].token_sha256: the same token as another client")
            }
            clients.append(client)
        }
        self.clients = clients
    }

    static let fields: Set<String> = ["id", "token_sha256", "scopes", "queues", "max_pending", "note"]

    private static func client(_ entry: JSONValue, at path: String) throws -> AuthClient {
        guard let members = entry.objectMembers else { throw Invalid("\(path): must be an object") }
        for m in members where !fields.contains(m.key) {
            throw Invalid("\(path).\(m.key): unknown field; known: \(fields.sorted().joined(separator: ", "))")
        }
        guard let id = entry["id"]?.stringValue, isValidClientID(id) else {
            throw Invalid("\(path).id: must match [A-Za-z0-9_.-]{1,64}")
        }
        guard let hex = entry["token_sha256"]?.stringValue, hex.utf8.count == 64, let digest = Secrets.bytes(hex: hex) else {
            throw Invalid("\(path).token_sha256: must be the token's SHA-256 as 64 hex digits (spool-api token makes one)")
        }
        guard let scopeValues = entry["scopes"]?.arrayValue, !scopeValues.isEmpty else {
            throw Invalid("\(path).scopes: must be a non-empty array of enqueue, read, admin, metrics")
        }
        var scopes = Set<Scope>()
        for v in scopeValues {
            guard let text = v.stringValue, let scope = Scope(rawValue: text) else {
                throw Invalid("\(path).scopes: unknown scope \(v.jsonText.prefix(40)); use enqueue, read, admin or metrics")
            }
            scopes.insert(scope)
        }
        var queues: [QueuePattern] = []
        if let queueValues = entry["queues"] {
            guard let list = queueValues.arrayValue else { throw Invalid("\(path).queues: must be an array of queue names or prefix*") }
            for v in list {
                guard let text = v.stringValue, let pattern = QueuePattern(text) else {
                    throw Invalid("\(path).queues: \(v.jsonText.prefix(80)) is not a queue name, prefix* or *")
                }
                queues.append(pattern)
            }
        }
        if queues.isEmpty && scopes != [.metrics] {
            throw Invalid("\(path).queues: name the queues this client may use (names, prefix* or *)")
        }
        var maxPending: Int64?
        if let v = entry["max_pending"], !v.isNull {
            guard let n = v.integerValue, n >= 1, n <= Int64(Int32.max) else {
                throw Invalid("\(path).max_pending: must be a whole number from 1 to \(Int32.max)")
            }
            maxPending = n
        }
        if let note = entry["note"], note.stringValue == nil { throw Invalid("\(path).note: must be a string") }
        return AuthClient(id: id, tokenSHA256: digest, scopes: scopes, queues: queues, maxPending: maxPending)
    }

    /// Client ids: `[A-Za-z0-9_.-]{1,64}`, like queue names (they are stored
    /// with jobs and scope idempotency keys).
    static func isValidClientID(_ id: String) -> Bool { Validation.isValidQueueName(id) }

    /// RFC 6750's token characters, at most `maxTokenLength`.
    static func isWellFormedToken(_ token: Substring) -> Bool {
        let u = token.utf8
        guard (1...maxTokenLength).contains(u.count) else { return false }
        var sawPadding = false
        for c in u {
            let isToken = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == 0x2D || c == 0x2E || c == 0x5F || c == 0x7E || c == 0x2B || c == 0x2F
            if c == 0x3D { sawPadding = true; continue }
            if !isToken || sawPadding { return false }
        }
        return true
    }
}

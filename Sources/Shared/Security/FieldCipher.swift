import COpenSSL

/// Encryption at rest (`SPOOL_ENCRYPTION_KEY_FILE`): a job's payload, result,
/// error and progress are stored in Redis sealed with AES-256-GCM, so that
/// whoever reads Redis (a backup, a replica, `redis-cli`) sees no plaintext.
///
/// A sealed value is `enc1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`,
/// never valid JSON, so plaintext values (jobs stored before encryption was
/// turned on, errors a Lua script writes) are told apart and read as they
/// are. The job id and field name are the GCM associated data: a sealed value
/// copied to another job or field does not open.
///
/// The key file holds one key per line, `<id> <base64 of 32 bytes>`; the
/// first line seals, every line opens, so keys rotate by putting a new line
/// first and dropping the old one once nothing sealed with it is kept.
public final class FieldCipher: @unchecked Sendable {  // immutable after init
    /// The process's cipher, set once at start before any thread runs; nil:
    /// values are stored in plaintext.
    nonisolated(unsafe) public static var shared: FieldCipher?

    public let currentID: String
    private let keys: [String: [UInt8]]
    /// Per key: the key for payload digests (`payloadMACs`), derived from it.
    private let macKeys: [String: [UInt8]]
    private let order: [String]

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    static let prefix = "enc1:"

    public init(keyFileText text: String, origin: String) throws {
        var keys: [String: [UInt8]] = [:]
        var order: [String] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw).trimmingCharacters(in: " \t\r")
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 2 else {
                throw Invalid(description: "\(origin) line \(n + 1): must be '<key id> <base64 of 32 random bytes>'")
            }
            let id = String(parts[0])
            guard (1...32).contains(id.utf8.count), id.utf8.allSatisfy({ Secrets.isIDByte($0) }) else {
                throw Invalid(description: "\(origin) line \(n + 1): key id must match [A-Za-z0-9_-]{1,32}")
            }
            guard let key = Secrets.bytes(base64: String(parts[1])), key.count == 32 else {
                throw Invalid(description: "\(origin) line \(n + 1): key \(id) must be 32 bytes in base64 (openssl rand -base64 32)")
            }
            guard keys[id] == nil else { throw Invalid(description: "\(origin) line \(n + 1): key id \(id) is used twice") }
            keys[id] = key
            order.append(id)
        }
        guard let first = order.first else { throw Invalid(description: "\(origin): holds no key") }
        self.keys = keys
        self.order = order
        currentID = first
        macKeys = keys.mapValues { Secrets.hmacSHA256(key: $0, Array("spool payload mac v1".utf8)) }
    }

    public static func isSealed(_ value: String) -> Bool { value.hasPrefix(prefix) }

    /// The value as it is to be stored: sealed when encryption is on.
    public static func stored(_ value: String, job: String, field: String) -> String {
        shared?.seal(value, job: job, field: field) ?? value
    }

    /// The value sealed with the current key, bound to the job and field.
    public func seal(_ plaintext: String, job: String, field: String) -> String {
        let key = keys[currentID]!
        let nonce = Secrets.randomBytes(12)
        let sealed = FieldCipher.gcm(encrypt: true, key: key, nonce: nonce, aad: FieldCipher.aad(job, field), input: Array(plaintext.utf8))!
        return FieldCipher.prefix + currentID + ":" + Secrets.base64url(nonce + sealed)
    }

    /// The plaintext of a sealed value; a plaintext value is returned as it is.
    public func open(_ value: String, job: String, field: String) throws -> String {
        guard FieldCipher.isSealed(value) else { return value }
        let rest = value.dropFirst(FieldCipher.prefix.count)
        guard let colon = rest.firstIndex(of: ":") else { throw Invalid(description: "\(field): malformed sealed value") }
        let id = String(rest[..<colon])
        guard let key = keys[id] else {
            throw Invalid(description: "\(field) is sealed with key '\(id.prefix(32))', which SPOOL_ENCRYPTION_KEY_FILE does not hold")
        }
        guard let blob = Secrets.bytes(base64: String(rest[rest.index(after: colon)...])), blob.count >= 28 else {
            throw Invalid(description: "\(field): malformed sealed value")
        }
        guard let plain = FieldCipher.gcm(encrypt: false, key: key, nonce: Array(blob.prefix(12)), aad: FieldCipher.aad(job, field),
                                          input: Array(blob.dropFirst(12))) else {
            throw Invalid(description: "\(field) does not open with key '\(id)': altered, or sealed for another job")
        }
        return String(decoding: plain, as: UTF8.self)
    }

    /// The payload's digest under every key, `id:hex` each, the current key's
    /// first: the enqueue script compares these, not the sealed payloads
    /// (sealed twice, one payload never looks the same), to tell whether a
    /// reused idempotency key carries the same request, also across a key
    /// rotation. Keyed, so that equal payloads cannot be guessed from Redis.
    public func payloadMACs(_ payload: String) -> [String] {
        order.map { id in id + ":" + Secrets.hex(Secrets.hmacSHA256(key: macKeys[id]!, Array(payload.utf8))) }
    }

    private static func aad(_ job: String, _ field: String) -> [UInt8] { Array("\(job)\u{0}\(field)".utf8) }

    /// AES-256-GCM: encrypt returns ciphertext ‖ tag; decrypt takes the same
    /// and returns the plaintext, or nil when the tag does not match.
    private static func gcm(encrypt: Bool, key: [UInt8], nonce: [UInt8], aad: [UInt8], input: [UInt8]) -> [UInt8]? {
        guard let ctx = EVP_CIPHER_CTX_new() else { return nil }
        defer { EVP_CIPHER_CTX_free(ctx) }
        let tagLength = 16
        let body = encrypt ? input : Array(input.dropLast(tagLength))
        var tag = encrypt ? [UInt8](repeating: 0, count: tagLength) : Array(input.suffix(tagLength))
        var out = [UInt8](repeating: 0, count: body.count + 16)
        var length: Int32 = 0
        var total = 0
        let initialized = encrypt ? EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, key, nonce)
                                  : EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, key, nonce)
        guard initialized == 1 else { return nil }
        if !aad.isEmpty {
            let ok = encrypt ? EVP_EncryptUpdate(ctx, nil, &length, aad, Int32(aad.count))
                             : EVP_DecryptUpdate(ctx, nil, &length, aad, Int32(aad.count))
            guard ok == 1 else { return nil }
        }
        let updated = out.withUnsafeMutableBufferPointer { o in
            encrypt ? EVP_EncryptUpdate(ctx, o.baseAddress, &length, body, Int32(body.count))
                    : EVP_DecryptUpdate(ctx, o.baseAddress, &length, body, Int32(body.count))
        }
        guard updated == 1 else { return nil }
        total = Int(length)
        if !encrypt {
            // EVP_CTRL_GCM_SET_TAG
            guard EVP_CIPHER_CTX_ctrl(ctx, 0x11, Int32(tagLength), &tag) == 1 else { return nil }
        }
        let finished = out.withUnsafeMutableBufferPointer { o in
            encrypt ? EVP_EncryptFinal_ex(ctx, o.baseAddress! + total, &length)
                    : EVP_DecryptFinal_ex(ctx, o.baseAddress! + total, &length)
        }
        guard finished == 1 else { return nil }
        total += Int(length)
        if encrypt {
            // EVP_CTRL_GCM_GET_TAG
            guard EVP_CIPHER_CTX_ctrl(ctx, 0x10, Int32(tagLength), &tag) == 1 else { return nil }
            return Array(out.prefix(total)) + tag
        }
        return Array(out.prefix(total))
    }
}

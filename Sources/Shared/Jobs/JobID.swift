#if canImport(Glibc)
import Glibc
#endif

/// Job ids: `<queue>~<26 characters>`.
///
/// The queue travels in the id so that `GET /v1/jobs/{id}` finds the job's keys
/// without a scan or a lookup table; `~` cannot occur in a queue name, so the
/// split is unambiguous. The tail is a ULID-like value (48-bit milliseconds,
/// 80 random bits, Crockford base32): unique without coordination and sortable
/// by creation time.
public struct JobID: Hashable, Sendable, CustomStringConvertible {
    public let queue: String
    public let text: String
    public var description: String { text }

    static let separator: Character = "~"
    static let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)
    /// `isAlphabet[b]`: whether byte b is one of the 32 letters (ids are parsed
    /// for every job a worker takes).
    static let isAlphabet: [Bool] = (0..<256).map { alphabet.contains(UInt8($0)) }

    public static func generate(queue: String, nowMillis: Int64 = Clock.nowMillis()) -> JobID {
        var rng = SystemRandomNumberGenerator()
        return generate(queue: queue, nowMillis: nowMillis, using: &rng)
    }

    public static func generate<R: RandomNumberGenerator>(queue: String, nowMillis: Int64 = Clock.nowMillis(),
                                                          using rng: inout R) -> JobID {
        var tail = [UInt8](repeating: 0, count: 26)
        var time = UInt64(max(0, nowMillis))
        for i in stride(from: 9, through: 0, by: -1) {
            tail[i] = alphabet[Int(time & 31)]
            time >>= 5
        }
        let random = rng.next() as UInt64
        let random2 = rng.next() as UInt64
        for i in 10..<26 {
            let bits = i < 22 ? (random >> UInt64((i - 10) * 5)) : (random2 >> UInt64((i - 22) * 5))
            tail[i] = alphabet[Int(bits & 31)]
        }
        let text = queue + String(separator) + String(decoding: tail, as: UTF8.self)
        return JobID(queue: queue, text: text)
    }

    /// Parses an id given by a client; nil when it is not one of ours.
    public init?(parsing text: String) {
        guard text.utf8.count <= 100, let sep = text.lastIndex(of: JobID.separator) else { return nil }
        let queue = String(text[..<sep])
        let tail = text[text.index(after: sep)...]
        guard Validation.isValidQueueName(queue), tail.utf8.count == 26,
              tail.utf8.allSatisfy({ JobID.isAlphabet[Int($0)] }) else { return nil }
        self.queue = queue
        self.text = text
    }

    init(queue: String, text: String) {
        self.queue = queue
        self.text = text
    }
}

/// Builds compact JSON: values, escaped strings, and objects field by field.
///
/// Responses are assembled from fields that are already JSON text in Redis
/// (payload, result, error), so the writer can splice raw fragments in without
/// parsing them again. It writes UTF-8 bytes, not a String: a batch response
/// of 1,000 jobs spent a third of its time in String's append machinery.
public struct JSONWriter {
    public private(set) var bytes: [UInt8] = []
    /// Whether the next value or key in the open object or array needs a comma
    /// first. One flag is enough: a value just closed always leaves its parent
    /// needing one, whatever the parent held before.
    private var needsComma = false

    public init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    /// The JSON written so far.
    public var text: String { String(decoding: bytes, as: UTF8.self) }

    public mutating func write(_ value: JSONValue) {
        switch value {
        case .null: append("null")
        case .bool(let b): append(b ? "true" : "false")
        case .number(let n): append(n)
        case .string(let s): writeString(s)
        case .array(let items):
            bytes.append(0x5B)
            for (i, item) in items.enumerated() {
                if i > 0 { bytes.append(0x2C) }
                write(item)
            }
            bytes.append(0x5D)
        case .object(let members):
            bytes.append(0x7B)
            for (i, m) in members.enumerated() {
                if i > 0 { bytes.append(0x2C) }
                writeString(m.key)
                bytes.append(0x3A)
                write(m.value)
            }
            bytes.append(0x7D)
        }
    }

    public mutating func writeString(_ s: String) {
        JSONWriter.appendQuoted(s, to: &bytes)
    }

    // MARK: object building

    public mutating func beginObject() { separate(); bytes.append(0x7B); needsComma = false }
    public mutating func endObject() { bytes.append(0x7D); markWritten() }
    public mutating func beginArray() { separate(); bytes.append(0x5B); needsComma = false }
    public mutating func endArray() { bytes.append(0x5D); markWritten() }

    /// Writes `"key":` inside an object; the next write is its value.
    public mutating func key(_ k: String) {
        separate()
        writeString(k)
        bytes.append(0x3A)
        needsComma = false
    }

    public mutating func field(_ k: String, _ s: String?) {
        key(k); if let s { writeString(s) } else { append("null") }; markWritten()
    }
    public mutating func field(_ k: String, _ n: Int64?) {
        key(k); if let n { append(String(n)) } else { append("null") }; markWritten()
    }
    public mutating func field(_ k: String, _ n: Int) { field(k, Int64(n)) }
    public mutating func field(_ k: String, _ b: Bool) { key(k); append(b ? "true" : "false"); markWritten() }
    public mutating func field(_ k: String, _ v: JSONValue) { key(k); write(v); markWritten() }
    /// A field whose value is already JSON text (trusted: it was validated when stored).
    public mutating func rawField(_ k: String, _ json: String?) {
        key(k); append(json ?? "null"); markWritten()
    }
    /// An array element or top-level value that is already JSON text.
    public mutating func raw(_ json: String) { separate(); append(json); markWritten() }

    private mutating func append(_ s: String) { bytes.append(contentsOf: s.utf8) }

    private mutating func separate() {
        if needsComma { bytes.append(0x2C) }
    }
    private mutating func markWritten() { needsComma = true }

    /// `s` as a JSON string literal.
    public static func quoted(_ s: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count + 2)
        appendQuoted(s, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static let hexDigits = Array("0123456789abcdef".utf8)

    /// Appends `s` as a JSON string literal, escaping `"`, `\` and control
    /// characters; everything else (valid UTF-8 already) is copied as is. Most
    /// strings (ids, names, timestamps) need no escape and are copied whole.
    static func appendQuoted(_ s: String, to out: inout [UInt8]) {
        out.append(0x22)
        var s = s
        s.withUTF8 { utf8 in
            if utf8.contains(where: { $0 == 0x22 || $0 == 0x5C || $0 < 0x20 }) {
                appendEscaped(utf8, to: &out)
            } else {
                out.append(contentsOf: utf8)
            }
        }
        out.append(0x22)
    }

    private static func appendEscaped(_ utf8: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        for b in utf8 {
            switch b {
            case 0x22: out.append(0x5C); out.append(0x22)
            case 0x5C: out.append(0x5C); out.append(0x5C)
            case 0x0A: out.append(0x5C); out.append(0x6E)
            case 0x0D: out.append(0x5C); out.append(0x72)
            case 0x09: out.append(0x5C); out.append(0x74)
            case 0..<0x20:
                out.append(contentsOf: [0x5C, 0x75, 0x30, 0x30, hexDigits[Int(b >> 4)], hexDigits[Int(b & 15)]])
            default: out.append(b)
            }
        }
    }
}

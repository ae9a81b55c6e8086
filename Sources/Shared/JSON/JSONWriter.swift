/// Builds compact JSON text: values, escaped strings, and objects field by field.
///
/// Responses are assembled from fields that are already JSON text in Redis
/// (payload, result, error), so the writer can splice raw fragments in without
/// parsing them again.
public struct JSONWriter {
    public private(set) var text = ""
    private var needsComma: [Bool] = [false]

    public init() {}

    public mutating func write(_ value: JSONValue) {
        switch value {
        case .null: text += "null"
        case .bool(let b): text += b ? "true" : "false"
        case .number(let n): text += n
        case .string(let s): writeString(s)
        case .array(let items):
            text += "["
            for (i, item) in items.enumerated() {
                if i > 0 { text += "," }
                write(item)
            }
            text += "]"
        case .object(let members):
            text += "{"
            for (i, m) in members.enumerated() {
                if i > 0 { text += "," }
                writeString(m.key)
                text += ":"
                write(m.value)
            }
            text += "}"
        }
    }

    public mutating func writeString(_ s: String) {
        JSONWriter.appendQuoted(s, to: &text)
    }

    // MARK: object building

    public mutating func beginObject() { separate(); text += "{"; needsComma.append(false) }
    public mutating func endObject() { needsComma.removeLast(); text += "}"; markWritten() }
    public mutating func beginArray() { separate(); text += "["; needsComma.append(false) }
    public mutating func endArray() { needsComma.removeLast(); text += "]"; markWritten() }

    /// Writes `"key":` inside an object; the next write is its value.
    public mutating func key(_ k: String) {
        separate()
        writeString(k)
        text += ":"
        needsComma[needsComma.count - 1] = false
    }

    public mutating func field(_ k: String, _ s: String?) {
        key(k); if let s { writeString(s) } else { text += "null" }; markWritten()
    }
    public mutating func field(_ k: String, _ n: Int64?) {
        key(k); text += n.map { String($0) } ?? "null"; markWritten()
    }
    public mutating func field(_ k: String, _ n: Int) { field(k, Int64(n)) }
    public mutating func field(_ k: String, _ b: Bool) { key(k); text += b ? "true" : "false"; markWritten() }
    public mutating func field(_ k: String, _ v: JSONValue) { key(k); write(v); markWritten() }
    /// A field whose value is already JSON text (trusted: it was validated when stored).
    public mutating func rawField(_ k: String, _ json: String?) {
        key(k); text += json ?? "null"; markWritten()
    }
    /// An array element or top-level value that is already JSON text.
    public mutating func raw(_ json: String) { separate(); text += json; markWritten() }

    private mutating func separate() {
        if needsComma[needsComma.count - 1] { text += "," }
    }
    private mutating func markWritten() { needsComma[needsComma.count - 1] = true }

    /// `s` as a JSON string literal.
    public static func quoted(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count + 2)
        appendQuoted(s, to: &out)
        return out
    }

    /// Appends `s` as a JSON string literal. Works on UTF-8 bytes: most
    /// strings need no escape and are appended whole (this runs for every
    /// key and value of every response, so it matters).
    static func appendQuoted(_ s: String, to out: inout String) {
        var clean = true
        for b in s.utf8 where b == 0x22 || b == 0x5C || b < 0x20 {
            clean = false
            break
        }
        out.append("\"")
        if clean {
            out.append(s)
        } else {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(s.utf8.count + 16)
            for b in s.utf8 {
                switch b {
                case 0x22: bytes += [0x5C, 0x22]
                case 0x5C: bytes += [0x5C, 0x5C]
                case 0x0A: bytes += [0x5C, 0x6E]
                case 0x0D: bytes += [0x5C, 0x72]
                case 0x09: bytes += [0x5C, 0x74]
                case 0..<0x20:
                    let hex = Array("0123456789abcdef".utf8)
                    bytes += [0x5C, 0x75, 0x30, 0x30, hex[Int(b >> 4)], hex[Int(b & 15)]]
                default: bytes.append(b)
                }
            }
            out.append(String(decoding: bytes, as: UTF8.self))
        }
        out.append("\"")
    }
}

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
        text += JSONWriter.quoted(s)
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
        var out = "\""
        out.reserveCapacity(s.utf8.count + 2)
        var plainStart = s.unicodeScalars.startIndex
        var i = plainStart
        let scalars = s.unicodeScalars
        while i != scalars.endIndex {
            let c = scalars[i]
            let escape: String?
            switch c {
            case "\"": escape = "\\\""
            case "\\": escape = "\\\\"
            case "\n": escape = "\\n"
            case "\r": escape = "\\r"
            case "\t": escape = "\\t"
            case _ where c.value < 0x20:
                let hex = String(c.value, radix: 16)
                escape = "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: escape = nil
            }
            if let escape {
                out.unicodeScalars.append(contentsOf: scalars[plainStart..<i])
                out += escape
                plainStart = scalars.index(after: i)
            }
            i = scalars.index(after: i)
        }
        out.unicodeScalars.append(contentsOf: scalars[plainStart..<scalars.endIndex])
        out += "\""
        return out
    }
}

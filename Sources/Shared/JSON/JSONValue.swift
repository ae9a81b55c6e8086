/// A parsed JSON document.
///
/// Numbers keep their original text so that a payload's big or precise numbers
/// survive a round trip through Spool unchanged; objects keep their member order.
public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([Member])

    public struct Member: Equatable, Sendable {
        public var key: String
        public var value: JSONValue
        public init(_ key: String, _ value: JSONValue) {
            self.key = key
            self.value = value
        }
    }

    /// The value of `key` in an object (the last one when a key repeats), else nil.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.last(where: { $0.key == key })?.value
    }

    public var isNull: Bool { self == .null }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var objectMembers: [Member]? {
        if case .object(let m) = self { return m }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    /// The value as a whole number, if it is a JSON number without fraction or
    /// exponent that fits in an Int64.
    public var integerValue: Int64? {
        guard case .number(let text) = self else { return nil }
        return Int64(text)
    }

    /// A short name of the value's JSON type, for error messages.
    public var typeName: String {
        switch self {
        case .null: return "null"
        case .bool: return "boolean"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// Compact JSON text of the value.
    public var jsonText: String {
        var out = JSONWriter()
        out.write(self)
        return out.text
    }
}

/// `%XX` escapes, as URLs (request paths, query strings, Redis URLs) carry
/// them. '+' is left alone: it means a space only in HTML forms.
public enum PercentDecoding {
    /// The decoded text; nil for a malformed escape or a result that is not UTF-8.
    public static func decode(_ s: Substring) -> String? {
        guard s.utf8.contains(0x25) else { return String(s) }
        var out: [UInt8] = []
        var bytes = Array(s.utf8)[...]
        while let b = bytes.popFirst() {
            if b == 0x25 {
                guard bytes.count >= 2, let hi = hexValue(bytes[bytes.startIndex]),
                      let lo = hexValue(bytes[bytes.startIndex + 1]) else { return nil }
                out.append(hi << 4 | lo)
                bytes = bytes.dropFirst(2)
            } else {
                out.append(b)
            }
        }
        return String(validating: out, as: UTF8.self)
    }

    private static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: return b - 0x30
        case 0x41...0x46: return b - 0x41 + 10
        case 0x61...0x66: return b - 0x61 + 10
        default: return nil
        }
    }
}

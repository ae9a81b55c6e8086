#if canImport(Glibc)
import Glibc
#endif

public enum FileInput {
    /// A whole (small) text file, or nil when it cannot be read, is larger than
    /// `maxBytes` or is not UTF-8.
    public static func read(_ path: String, maxBytes: Int) -> String? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n == 0 { break }
            bytes += buffer[..<n]
            if bytes.count > maxBytes { return nil }
        }
        if ferror(f) != 0 { return nil }
        return String(validating: bytes, as: UTF8.self)
    }
}

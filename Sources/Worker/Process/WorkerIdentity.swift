#if canImport(Glibc)
import Glibc
#endif

/// Who this worker process is: `<host>-<pid>-<4 random hex>`, unique even when
/// pids repeat across containers that share a host name.
enum WorkerIdentity {
    static let hostname: String = {
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count)
        let name = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }()

    static let pid = Int(getpid())

    static func newID(index: Int? = nil) -> String {
        let tag = String(UInt16.random(in: 0...UInt16.max), radix: 16)
        let padded = String(repeating: "0", count: 4 - tag.count) + tag
        return "\(hostname)-\(pid)" + (index.map { "-\($0)" } ?? "") + "-\(padded)"
    }
}

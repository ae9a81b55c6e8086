/// Metric handles made once per label set and kept, for any thread. Asking
/// the metrics factory on every job or request (a registry lookup by name and
/// labels under its lock) showed in profiles.
public final class HandleCache<Key: Hashable, Handle>: @unchecked Sendable {  // every access is under `lock`
    private let lock = Lock()
    private var handles: [Key: Handle] = [:]
    private let make: (Key) -> Handle

    public init(_ make: @escaping (Key) -> Handle) { self.make = make }

    public subscript(key: Key) -> Handle {
        lock.locked {
            if let h = handles[key] { return h }
            let h = make(key)
            handles[key] = h
            return h
        }
    }
}

import Shared
import Synchronization

/// A flag that many threads read and one sets. Reading is an atomic load:
/// every loop checks it for every job.
final class StopFlag {
    private let flag = Atomic<Bool>(false)
    private let gate = Latch()
    func set() {
        flag.store(true, ordering: .releasing)
        gate.open()
    }
    var isSet: Bool { flag.load(ordering: .acquiring) }
    /// Sleeps up to `ms`; returns early (true) once the flag is set.
    func sleep(ms: Int64) -> Bool { gate.wait(timeoutMs: ms) }
}

import CoreMetrics
import Logging
import Shared
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The auth file's clients as the API uses them now, shared by every event
/// loop. The file is read again when it changes (main's reload watch checks
/// every second: a Kubernetes Secret is updated by swapping a symlink, which no
/// inotify watch on the file would see) or on SIGHUP. A file that cannot be read or parsed
/// leaves the clients in force as they were, and is logged and counted.
final class AuthStore: @unchecked Sendable {  // `table` and `stamp` are under `lock`
    let path: String
    private let logger: Logger
    private let lock = Lock()
    private var table: AuthTable
    private var stamp: FileStamp?
    /// Bumped on every successful reload: an event loop compares it to the
    /// one it copied the table at (one atomic load per request, no lock).
    let generation = Atomic<Int>(0)

    /// Reads the file; throws when it cannot be used (the API then refuses to start).
    init(path: String, logger: Logger) throws {
        self.path = path
        self.logger = logger
        stamp = FileStamp(path)
        table = try AuthStore.load(path)
        Gauge(label: SpoolMetric.authClients).record(table.clients.count)
        Counter(label: SpoolMetric.authReloadErrors).increment(by: 0)
        for reason in AuthDenial.reasons { Counter(label: SpoolMetric.authDenied, dimensions: [("reason", reason)]).increment(by: 0) }
    }

    var current: AuthTable { lock.locked { table } }

    /// Reads the file again if its identity, size or modification time changed.
    func reloadIfChanged() {
        let now = FileStamp(path)
        guard lock.locked({ now != stamp }) else { return }
        reload(reason: "file changed")
    }

    /// Held through a whole reload: the watch thread and a SIGHUP reloading
    /// at once could otherwise install the older read last.
    private let reloading = Lock()

    /// Reads the file now (SIGHUP, or a change was seen).
    func reload(reason: String) {
        reloading.lock()
        defer { reloading.unlock() }
        let now = FileStamp(path)
        do {
            let fresh = try AuthStore.load(path)
            lock.locked {
                table = fresh
                stamp = now
            }
            generation.add(1, ordering: .releasing)
            Gauge(label: SpoolMetric.authClients).record(fresh.clients.count)
            logger.info("auth file loaded", metadata: [
                "path": "\(path)", "reason": "\(reason)", "clients": .stringConvertible(fresh.clients.count),
            ])
        } catch {
            // Remember this version, so a broken file is reported once, not every second.
            lock.locked { stamp = now }
            Counter(label: SpoolMetric.authReloadErrors).increment()
            logger.error("auth file not used; the previous clients stay in force", metadata: [
                "path": "\(path)", "reason": "\(reason)", "error": "\(error)",
            ])
        }
    }

    private static func load(_ path: String) throws -> AuthTable {
        guard let text = FileInput.read(path, maxBytes: AuthTable.maxFileBytes) else {
            throw AuthTable.Invalid("\(path): cannot be read (missing, unreadable, over \(AuthTable.maxFileBytes) bytes or not UTF-8)")
        }
        do {
            return try AuthTable(parsing: text)
        } catch {
            throw AuthTable.Invalid("\(path): \(error)")
        }
    }
}

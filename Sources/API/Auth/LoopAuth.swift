import Shared

/// One event loop's view of the auth file: a copy of the clients, refreshed
/// when the shared store's generation moves (one atomic load per request).
final class LoopAuth {
    let store: AuthStore
    private var table: AuthTable
    private var seen: Int

    init(store: AuthStore) {
        self.store = store
        seen = store.generation.load(ordering: .acquiring)
        table = store.current
    }

    var current: AuthTable {
        let generation = store.generation.load(ordering: .acquiring)
        if generation != seen {
            // The store swaps its table before it bumps the generation, so
            // this copy is at least as new as `generation`.
            seen = generation
            table = store.current
        }
        return table
    }
}

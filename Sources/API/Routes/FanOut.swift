import Shared

extension Router {
    /// Sends one Redis call per item (all pipelined on this loop's connection,
    /// at most `chunk` in flight), and calls back once with the outputs in
    /// order, or with the first failure. A chunk's replies are handled in one
    /// pass of the loop, so a listing or a scrape of many items holds the
    /// loop for one chunk at a time; other requests are served in between.
    func fanOut<Item, Output>(_ items: [Item], chunk: Int = 100,
                              _ call: @escaping (Item, @escaping (Result<Output, Error>) -> Void) -> Void,
                              done: @escaping (Result<[Output], Error>) -> Void) {
        var results: [Output] = []
        results.reserveCapacity(items.count)
        func next(from start: Int) {
            if start >= items.count { return done(.success(results)) }
            let part = items[start..<min(items.count, start + chunk)]
            var replies = [Output?](repeating: nil, count: part.count)
            var remaining = part.count
            var failed = false
            for (i, item) in part.enumerated() {
                call(item) { result in
                    guard !failed else { return }
                    switch result {
                    case .failure(let e):
                        failed = true
                        done(.failure(e))
                    case .success(let output):
                        replies[i] = output
                        remaining -= 1
                        if remaining == 0 {
                            results += replies.map { $0! }
                            next(from: start + part.count)
                        }
                    }
                }
            }
        }
        next(from: 0)
    }
}

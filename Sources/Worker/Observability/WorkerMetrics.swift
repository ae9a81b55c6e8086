import CoreMetrics
import Shared

/// The worker's metrics, recorded through swift-metrics (exported by the
/// Prometheus registry on the health port's `/metrics`).
///
/// Handles are made once per queue and kept (HandleCache). Each
/// fetch loop also keeps the ones it uses (LoopMetrics), so that
/// sixteen loops do not queue on this table's lock for every job.
enum WorkerMetrics {
    final class QueueHandles {
        let processed, failed, retried, dead, recovered: Counter
        let duration, startLatency: Timer

        init(_ queue: String) {
            let q = [("queue", queue)]
            processed = Counter(label: SpoolMetric.jobsProcessed, dimensions: q)
            failed = Counter(label: SpoolMetric.jobsFailed, dimensions: q)
            retried = Counter(label: SpoolMetric.jobsRetried, dimensions: q)
            dead = Counter(label: SpoolMetric.jobsDead, dimensions: q)
            recovered = Counter(label: SpoolMetric.jobsRecovered, dimensions: q)
            duration = Timer(label: SpoolMetric.jobDuration, dimensions: q)
            startLatency = Timer(label: SpoolMetric.jobStartLatency, dimensions: q)
        }

        func started(_ job: Job) {
            // Both times come from Redis' clock, so hosts' clocks do not matter.
            guard let started = job.startedUs, let queued = job.runAtUs ?? job.createdUs else { return }
            startLatency.recordMicroseconds(max(0, started - queued))
        }

        func finished(durationMs: Int64) { duration.recordMilliseconds(durationMs) }
        func succeeded() { processed.increment() }

        func failed(_ outcome: FailCall.Outcome) {
            guard outcome != .stale else { return }
            failed.increment()
            switch outcome {
            case .retry: retried.increment()
            case .dead: dead.increment()
            case .stale: break
            }
        }

        func recovered(dead isDead: Bool) {
            recovered.increment()
            if isDead { dead.increment() }
        }
    }

    private static let handles = HandleCache<String, QueueHandles> { QueueHandles($0) }

    static func queue(_ name: String) -> QueueHandles { handles[name] }

    static func recovered(_ queue: String, dead: Bool) { self.queue(queue).recovered(dead: dead) }

    static func redisError(kind: String) { Counter(label: SpoolMetric.redisErrors, dimensions: [("kind", kind)]).increment() }
    static func redisReconnected() { Counter(label: SpoolMetric.redisReconnects).increment() }
    static func redisUp(_ up: Bool) { Gauge(label: SpoolMetric.redisUp).record(up ? 1 : 0) }

    /// Outcomes by job type: the types are the worker's handlers (bounded by
    /// its configuration); a job of any other type counts as `other`.
    final class TypeHandles {
        let succeeded, retried, deferred, dead, stopped: Counter

        init(_ type: String) {
            func counter(_ outcome: String) -> Counter {
                Counter(label: SpoolMetric.jobOutcomes, dimensions: [("type", type), ("outcome", outcome)])
            }
            succeeded = counter("succeeded")
            retried = counter("retried")
            deferred = counter("deferred")
            dead = counter("dead")
            stopped = counter("stopped")
        }
    }

    private static let typeHandles = HandleCache<String, TypeHandles> { TypeHandles($0) }
    nonisolated(unsafe) private static var knownTypes: Set<String> = []

    /// The handles of a job type (`other` for a type without a handler here).
    /// Fetch loops keep what this returns (LoopMetrics), as for queues.
    static func type(_ name: String) -> TypeHandles { typeHandles[knownTypes.contains(name) ? name : "other"] }

    /// Makes every series of the configured queues and handler types, at 0,
    /// before the first job: a rate() or an alert on them works from the start.
    /// Called once at start, before any fetch loop runs.
    static func bootstrap(queues: [String], types: [String]) {
        knownTypes = Set(types)
        for q in queues { _ = queue(q) }
        for t in types + ["other"] { _ = typeHandles[t] }
    }

    /// Busy and idle fetch loops, set before each scrape.
    static func loops(busy: Int, total: Int) {
        Gauge(label: SpoolMetric.workerLoops, dimensions: [("state", "busy")]).record(busy)
        Gauge(label: SpoolMetric.workerLoops, dimensions: [("state", "idle")]).record(max(0, total - busy))
    }
}

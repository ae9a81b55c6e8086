import Shared

/// One fetch loop's own metric handles, by queue and by job type: made once
/// and kept, so that sixteen loops do not queue on the shared tables' lock
/// for every job. Used by the loop's JobRunner and JobReporter (same thread).
final class LoopMetrics {
    private var queues: [String: WorkerMetrics.QueueHandles] = [:]
    private var types: [String: WorkerMetrics.TypeHandles] = [:]

    func queue(_ name: String) -> WorkerMetrics.QueueHandles {
        if let h = queues[name] { return h }
        let h = WorkerMetrics.queue(name)
        queues[name] = h
        return h
    }

    func type(_ name: String) -> WorkerMetrics.TypeHandles {
        if let h = types[name] { return h }
        let h = WorkerMetrics.type(name)
        types[name] = h
        return h
    }
}

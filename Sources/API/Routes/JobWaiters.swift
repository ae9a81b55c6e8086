import Shared

/// Requests waiting for jobs to finish (`GET /v1/jobs/{id}?wait=S`), on one loop.
///
/// A waiter costs a dictionary entry, no thread and no polling: the loop's
/// pub/sub connection tells it when a job reaches a terminal state, and a
/// timer answers the ones whose wait ran out.
final class JobWaiters {
    struct Waiter {
        let id: JobID
        let responder: Responder
        let view: JobView
        let deadline: Int64
        let token: Int
    }

    /// Called with every waiter of a job that finished or whose time ran out;
    /// the router answers each with the job's current state, in its view.
    var answer: ((JobID, [Waiter]) -> Void)?
    private var byJob: [String: [Waiter]] = [:]
    private var nextToken = 0
    private var timer: RepeatingTimer?
    static let tickMs = 50

    init(loop: LibeventLoop) {
        timer = loop.every(milliseconds: JobWaiters.tickMs) { [unowned self] in expire() }
    }

    /// Registers a waiter; the token removes exactly this one later.
    func add(_ id: JobID, _ responder: Responder, view: JobView, waitMs: Int64) -> Int {
        nextToken += 1
        byJob[id.text, default: []].append(
            Waiter(id: id, responder: responder, view: view, deadline: Clock.monotonicMillis() + waitMs, token: nextToken))
        return nextToken
    }

    /// A job reached a terminal state (message on the finished channel).
    func finished(_ idText: String) {
        guard let waiters = byJob.removeValue(forKey: idText), let first = waiters.first else { return }
        answer?(first.id, waiters)
    }

    /// After the pub/sub connection was down, messages may have been missed:
    /// every waiter is answered if its job has finished meanwhile.
    func recheckAll(_ check: (JobID) -> Void) {
        for waiters in byJob.values where !waiters.isEmpty { check(waiters[0].id) }
    }

    /// Removes every waiter, handing each job's to `answer` (at shutdown).
    func takeAll(_ answer: (JobID, [Waiter]) -> Void) {
        let all = byJob
        byJob = [:]
        for waiters in all.values where !waiters.isEmpty { answer(waiters[0].id, waiters) }
    }

    /// Removes one waiter (answered directly), leaving the job's others waiting.
    func remove(_ idText: String, token: Int) {
        guard var waiters = byJob[idText] else { return }
        waiters.removeAll { $0.token == token }
        byJob[idText] = waiters.isEmpty ? nil : waiters
    }

    private func expire() {
        let now = Clock.monotonicMillis()
        for (key, waiters) in byJob {
            let due = waiters.filter { $0.deadline <= now }
            guard !due.isEmpty else { continue }
            let rest = waiters.filter { $0.deadline > now }
            byJob[key] = rest.isEmpty ? nil : rest
            answer?(due[0].id, due)
        }
    }
}

import Shared

/// Who sent a request, as far as the API is concerned: a client of the auth
/// file, or anyone (authentication off, or an open route).
struct Caller: Sendable {
    /// nil: authentication is off, or the route is open.
    let client: AuthClient?

    static let anyone = Caller(client: nil)

    /// What enqueue records as the job's owner.
    var clientID: String? { client?.id }

    /// Whether jobs are filtered for this caller (a client without `admin`).
    var isRestricted: Bool { client.map { !$0.isAdmin } ?? false }

    func mayUse(queue: String) -> Bool { client?.mayUse(queue: queue) ?? true }

    /// Whether this caller may see (and act on) the job: its queue is one of
    /// the caller's, and the caller enqueued it or is an admin. Anyone else is
    /// told there is no such job, so that ids reveal nothing.
    func sees(_ job: Job) -> Bool { sees(queue: job.id.queue, owner: job.client) }

    func sees(queue: String, owner: String?) -> Bool {
        guard let client else { return true }
        guard client.mayUse(queue: queue) else { return false }
        return client.isAdmin || owner == client.id
    }
}

/// Why a request was refused, as counted in `spool_api_auth_denied_total`.
enum AuthDenial {
    static let reasons = ["missing_token", "invalid_token", "unknown_token", "token_in_url", "scope", "queue", "client_quota"]
}

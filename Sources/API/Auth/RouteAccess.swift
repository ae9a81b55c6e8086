import Shared

/// Who may call a route, when authentication is on.
enum RouteAccess: Sendable {
    /// Anyone: `/healthz`, `/readyz` (probes carry no token).
    case open
    /// A client with the `metrics` or `admin` scope.
    case metrics
    /// A client with the scope; the route names no queue (the action filters).
    case global(Scope)
    /// A client with the scope whose queues are `*`: the route shows every
    /// queue's data and cannot filter it (`GET /v1/workers`).
    case everyQueue(Scope)
    /// A client with the scope that may use the queue named by the route's
    /// first `:` segment.
    case queue(Scope)
    /// A client with the scope; the action checks that the caller sees the job
    /// (its own, or any in its queues for an admin) and answers 404 otherwise.
    case job(Scope)
}

extension Router {
    /// Checks the request's token against the route's access; returns who sent
    /// it, or answers 401 / 403 itself and returns nil. Runs before the route
    /// reads the body or touches Redis, so a refused request changes nothing.
    func authorize(_ route: Route, _ captured: [Substring], _ request: HTTPRequest, _ responder: Responder) -> Caller? {
        guard let auth else { return .anyone }
        if case .open = route.access { return .anyone }
        // A token in the URL ends up in access logs, proxies and browser
        // history: refused even when it would be valid.
        if request.query["access_token"] != nil || request.query["token"] != nil {
            deny("token_in_url", responder, .error(400, "token_in_url",
                "access tokens are not accepted in the URL (URLs end up in logs); send the header Authorization: Bearer <token>"))
            return nil
        }
        guard let header = request.header("authorization") else {
            deny("missing_token", responder, Router.unauthorized("this route needs a token: send Authorization: Bearer <token>",
                                                                 invalid: false))
            return nil
        }
        guard let token = Router.bearerToken(header) else {
            deny("invalid_token", responder, Router.unauthorized(
                "the Authorization header must be 'Bearer <token>' with a token of at most \(AuthTable.maxTokenLength) "
                + "characters [A-Za-z0-9-._~+/]", invalid: true))
            return nil
        }
        guard let client = auth.current.client(token: token) else {
            deny("unknown_token", responder, Router.unauthorized("the token is not known (mistyped, revoked or rotated)", invalid: true))
            return nil
        }
        let needed: Scope
        switch route.access {
        case .open: return .anyone
        case .metrics:
            guard client.has(.metrics) else {
                deny("scope", responder, Router.forbidden("client \(client.id) has no metrics or admin scope"))
                return nil
            }
            return Caller(client: client)
        case .global(let scope), .job(let scope):
            needed = scope
        case .everyQueue(let scope):
            needed = scope
            if client.has(scope) && !client.queues.contains(where: { $0.text == "*" }) {
                deny("queue", responder, Router.forbidden("client \(client.id) may not use every queue (its queues are not *); "
                                                          + "this route shows them all"))
                return nil
            }
        case .queue(let scope):
            needed = scope
            // An undecodable or invalid name is left to the route (400).
            if let segment = captured.first, let queue = HTTPHeadParser.percentDecode(segment),
               Validation.isValidQueueName(queue), !client.mayUse(queue: queue), client.has(scope) {
                deny("queue", responder, Router.forbidden("client \(client.id) may not use queue \(queue)"))
                return nil
            }
        }
        guard client.has(needed) else {
            deny("scope", responder, Router.forbidden("client \(client.id) has no \(needed.rawValue) scope"
                                                      + (needed == .admin ? "" : " (nor admin)")))
            return nil
        }
        return Caller(client: client)
    }

    /// The token of `Bearer <token>` (the scheme in any case), or nil when the
    /// header is not that or the token is malformed.
    static func bearerToken(_ header: String) -> Substring? {
        let trimmed = header.trimmingCharacters(in: " ")
        guard let space = trimmed.firstIndex(of: " ") else { return nil }
        guard trimmed[..<space].lowercased() == "bearer" else { return nil }
        var token = trimmed[space...]
        while token.first == " " { token = token.dropFirst() }
        return AuthTable.isWellFormedToken(token) ? token : nil
    }

    private func deny(_ reason: String, _ responder: Responder, _ response: HTTPResponse) {
        APIMetrics.authDenied(reason)
        responder.send(response)
    }

    /// 401 with the challenge RFC 6750 asks for.
    static func unauthorized(_ message: String, invalid: Bool) -> HTTPResponse {
        let challenge = invalid ? #"Bearer realm="spool", error="invalid_token""# : #"Bearer realm="spool""#
        return .error(401, "unauthorized", message, headers: [("WWW-Authenticate", challenge)])
    }

    static func forbidden(_ message: String) -> HTTPResponse { .error(403, "forbidden", message) }
}

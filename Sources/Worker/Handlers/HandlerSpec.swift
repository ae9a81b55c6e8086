import Shared

/// What `--handler TYPE=SPEC` names: a command run once per job (the
/// default), a long-lived command (`persistent:COMMAND`), or a URL
/// (`http://host:port/path`).
enum HandlerSpec: Equatable {
    case command(String)
    case persistent(String)
    case http(HTTPTarget)

    static let persistentPrefix = "persistent:"

    init(_ spec: String) throws {
        if spec.hasPrefix(HandlerSpec.persistentPrefix) {
            let command = String(spec.dropFirst(HandlerSpec.persistentPrefix.count)).trimmingCharacters(in: " ")
            guard !command.isEmpty else { throw ConfigError("'persistent:' needs a command after it") }
            self = .persistent(command)
        } else if spec.hasPrefix("http://") || spec.hasPrefix("https://") {
            do {
                self = .http(try HTTPTarget(parsing: spec))
            } catch {
                throw ConfigError("\(error)")
            }
        } else {
            self = .command(spec)
        }
    }
}

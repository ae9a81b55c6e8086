import Shared
#if canImport(Glibc)
import Glibc
#endif

/// `spool-api token --id ID --scopes a,b [--queues q,p*] [--max-pending N] [--token-from-stdin]`:
/// makes a new API token and prints it with the auth file entry that admits
/// it, as one JSON object: `{"token": "...", "entry": {...}}`. The token is
/// shown once; the file keeps only its SHA-256.
enum TokenCommand {
    static let usage = """
        usage: spool-api token --id ID --scopes SCOPES [--queues QUEUES] [--max-pending N] [--token-from-stdin]

        Makes a new API token and prints {"token": ..., "entry": ...}. Add the entry to the
        clients array of the auth file (SPOOL_AUTH_FILE); give the token to the client.
          --id ID              the client's id, [A-Za-z0-9_.-]{1,64}
          --scopes SCOPES      comma-separated: enqueue, read, admin, metrics
          --queues QUEUES      comma-separated queue names, prefix* or * (not needed for metrics only)
          --max-pending N      the client's unfinished jobs per queue at most
          --token-from-stdin   use the token read from stdin instead of making one
        """

    static func run(_ arguments: [String]) -> Never {
        var options: [String: String] = [:]
        var fromStdin = false
        var i = 0
        while i < arguments.count {
            let a = arguments[i]
            switch a {
            case "--help", "-h":
                print(usage)
                exit(0)
            case "--token-from-stdin":
                fromStdin = true
            case "--id", "--scopes", "--queues", "--max-pending":
                guard i + 1 < arguments.count else { fail("\(a) needs a value") }
                options[a] = arguments[i + 1]
                i += 1
            default:
                fail("unknown option '\(a.prefix(60))'")
            }
            i += 1
        }
        let token: String
        if fromStdin {
            guard let line = readLine(strippingNewline: true), AuthTable.isWellFormedToken(Substring(line)) else {
                fail("stdin must hold a token of 1 to \(AuthTable.maxTokenLength) characters [A-Za-z0-9-._~+/]")
            }
            token = line
        } else {
            // 32 random bytes: 256 bits, beyond guessing; the prefix lets secret scanners spot a leaked one.
            token = "spool_" + Secrets.base64url(Secrets.randomBytes(32))
        }
        var entry: [JSONValue.Member] = [
            .init("id", .string(options["--id"] ?? "")),
            .init("token_sha256", .string(Secrets.hex(Secrets.sha256(token.utf8)))),
            .init("scopes", .array(list(options["--scopes"]).map(JSONValue.string))),
        ]
        let queues = list(options["--queues"])
        if !queues.isEmpty { entry.append(.init("queues", .array(queues.map(JSONValue.string)))) }
        if let n = options["--max-pending"] { entry.append(.init("max_pending", .number(n))) }
        // The same checks as the API applies when it reads the file.
        let document = JSONValue.object([.init("clients", .array([.object(entry)]))])
        do {
            _ = try AuthTable(parsing: document.jsonText)
        } catch {
            let text = "\(error)"
            fail(text.hasPrefix("clients[0].") ? String(text.dropFirst("clients[0].".count)) : text)
        }
        print(JSONValue.object([.init("token", .string(token)), .init("entry", .object(entry))]).jsonText)
        exit(0)
    }

    private static func list(_ text: String?) -> [String] {
        (text ?? "").split(separator: ",").map { String($0).trimmingCharacters(in: " ") }.filter { !$0.isEmpty }
    }

    private static func fail(_ message: String) -> Never {
        FileOutput.stderr("spool-api token: \(message)\n\n\(usage)")
        exit(2)
    }
}

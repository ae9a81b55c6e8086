/// One setting, declared once: its flag and environment variable, its default
/// as the docs state it, the range and unit of a number, and what it means.
/// Parsing (`SettingSource`), `--help` and the README's settings tables
/// (`--settings-markdown`, checked by Tests/e2e/test_settings_tables.py) all
/// come from these declarations, so they cannot drift apart.
public struct Setting: Sendable {
    /// The flag without its dashes; nil for a setting with an environment variable only.
    public let flag: String?
    public let env: String
    /// The default as documented ("30000", "min(5000, lease/3)", "off").
    public let defaultText: String
    /// The accepted range of a whole-number setting.
    public let range: ClosedRange<Int64>?
    /// The unit of a number ("milliseconds"), named in errors.
    public let unit: String
    public let help: String
    /// A flag that may be given several times (each value kept).
    public let repeatable: Bool

    public init(_ flag: String?, env: String, default defaultText: String, range: ClosedRange<Int64>? = nil,
                unit: String = "", repeatable: Bool = false, _ help: String) {
        self.flag = flag
        self.env = env
        self.defaultText = defaultText
        self.range = range
        self.unit = unit
        self.help = help
        self.repeatable = repeatable
    }

    /// `--name`, as errors and help show it.
    public var flagName: String { flag.map { "--" + $0 } ?? "" }

    /// The command-line option, with the help `--help` prints.
    public var option: CommandLineOptions.Option? {
        flag.map { CommandLineOptions.Option($0, "\(help) [\(env), default \(defaultText)]", repeatable: repeatable) }
    }

    /// The settings as a Markdown table: flag, environment variable, default, meaning.
    public static func markdownTable(_ settings: [Setting]) -> String {
        var lines = ["| flag | env | default | meaning |", "|---|---|---|---|"]
        for s in settings {
            let flag = s.flag.map { "`--\($0)`" } ?? "–"
            lines.append("| \(flag) | `\(s.env)` | \(s.defaultText) | \(s.help.replacingPipes) |")
        }
        return lines.joined(separator: "\n")
    }

    /// The options of a binary's command line: its settings' flags, and the
    /// one that prints the tables.
    public static func commandLine(_ settings: [Setting]) -> [CommandLineOptions.Option] {
        settings.compactMap(\.option) + [
            .init("settings-markdown", "Print the settings as a Markdown table and exit: 'shared' (both binaries) or 'own'"),
        ]
    }
}

/// The settings both binaries take.
public enum SharedSettings {
    public static let redisURL = Setting(
        "redis-url", env: "REDIS_URL", default: "`redis://127.0.0.1:6379`",
        "Where Redis is, read as RFC 3986: `redis://[user[:password]@]host[:port][/db]` (`redis://app@host` is the user `app` with an empty password, as an ACL `nopass` user takes; `redis://:secret@host` a password for the default user), IPv6 in brackets (`redis://[::1]:6379`), or `unix:///path/redis.sock?db=2`, or behind Sentinel `redis+sentinel://[user[:password]@]host1[:port],host2[:port],.../master[/db]` (sentinels on 26379 by default; the credentials are the data nodes'), or a Redis Cluster `redis+cluster://[user[:password]@]host1[:port],host2[:port],...` (seed nodes; any one that answers is enough). `rediss://...` is `redis://` over TLS (one Redis; see `SPOOL_REDIS_CA_FILE`). Percent-encode `@ : / ?` in a password")
    public static let redisURLFile = Setting(
        "redis-url-file", env: "REDIS_URL_FILE", default: "–",
        "A file holding the Redis URL (a mounted secret), instead of `REDIS_URL`")
    public static let redisPasswordFile = Setting(
        "redis-password-file", env: "REDIS_PASSWORD_FILE", default: "–",
        "A file holding the Redis password (a mounted secret; a final line break is ignored), for a URL without one")
    public static let redisCAFile = Setting(
        "redis-ca-file", env: "SPOOL_REDIS_CA_FILE", default: "the system's CAs",
        "With `rediss://`: PEM file of the CA certificates that Redis' certificate must chain to")
    public static let redisCertFile = Setting(
        "redis-cert-file", env: "SPOOL_REDIS_CERT_FILE", default: "–",
        "With `rediss://`: client certificate (PEM) for a Redis that asks for one (`tls-auth-clients yes`); with `SPOOL_REDIS_KEY_FILE`")
    public static let redisKeyFile = Setting(
        "redis-key-file", env: "SPOOL_REDIS_KEY_FILE", default: "–", "With `rediss://`: the client certificate's private key (PEM)")
    public static let redisTLSServerName = Setting(
        "redis-tls-server-name", env: "SPOOL_REDIS_TLS_SERVER_NAME", default: "the URL's host",
        "With `rediss://`: the name Redis' certificate must carry (and SNI), when it is not the URL's host")
    public static let encryptionKeyFile = Setting(
        "encryption-key-file", env: "SPOOL_ENCRYPTION_KEY_FILE", default: "– (off)",
        "Store payloads, results, errors and progress sealed with AES-256-GCM: a file of `<key id> <base64 32 bytes>` lines, the first seals, all open. Give the API and the workers the same file")
    public static let sentinels = Setting(
        "sentinels", env: "SPOOL_SENTINELS", default: "–",
        "The sentinels as separate settings, instead of a `redis+sentinel://` URL: `host1[:port],host2[:port],...` (26379 by default), with `SPOOL_SENTINEL_MASTER`; `REDIS_URL` (a `redis://` URL) then gives only the data nodes' user, password and database, its host and port are not used")
    public static let sentinelMaster = Setting(
        "sentinel-master", env: "SPOOL_SENTINEL_MASTER", default: "–",
        "With `SPOOL_SENTINELS`: the name of the master the sentinels watch")
    public static let sentinelUsername = Setting(
        "sentinel-username", env: "SPOOL_SENTINEL_USERNAME", default: "–",
        "With `redis+sentinel://` or `SPOOL_SENTINELS`: the user the sentinels take, when they have their own ACL")
    public static let sentinelPassword = Setting(
        "sentinel-password", env: "SPOOL_SENTINEL_PASSWORD", default: "–",
        "With `redis+sentinel://` or `SPOOL_SENTINELS`: the sentinels' password (`requirepass` in sentinel.conf), when they have one")
    public static let prefix = Setting(
        "prefix", env: "SPOOL_PREFIX", default: "`spool`", "Prefix of every Redis key: 1 to 32 of A-Z a-z 0-9 _ . -")
    public static let logLevel = Setting(
        "log-level", env: "SPOOL_LOG_LEVEL", default: "`info`", "trace, debug, info, notice, warning, error, critical")
    public static let logFormat = Setting(
        "log-format", env: "SPOOL_LOG_FORMAT", default: "`text` on a terminal, else `json`", "`json` (one object per line) or `text`")
    public static let all = [redisURL, redisURLFile, redisPasswordFile, redisCAFile, redisCertFile, redisKeyFile,
                             redisTLSServerName, encryptionKeyFile, sentinels, sentinelMaster, sentinelUsername, sentinelPassword, prefix, logLevel,
                             logFormat]
}

extension String {
    /// The text with `|` escaped, for a Markdown table cell.
    var replacingPipes: String {
        var out = ""
        for c in self { out += c == "|" ? "\\|" : String(c) }
        return out
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// A configuration error: names the setting (its flag and env var) and what is wrong.
public struct ConfigError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Resolves one setting: the flag wins, then the environment variable, then the
/// default. Every parser throws a `ConfigError` that names the setting, so a
/// bad value stops the process at start with a message a person can act on.
public struct SettingSource {
    let environment: [String: String]
    /// The parsed command line.
    let flags: CommandLineOptions

    public init(environment: [String: String] = SettingSource.processEnvironment(), flags: CommandLineOptions = CommandLineOptions()) {
        self.environment = environment
        self.flags = flags
    }

    public static func processEnvironment() -> [String: String] {
        var env: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return env
    }

    /// The raw text of a setting and where it came from, or nil when unset.
    public func raw(flag: String?, flagName: String, env: String) -> (value: String, origin: String)? {
        if let flag { return (flag, flagName) }
        if let v = environment[env] { return (v, env) }
        return nil
    }

    public func string(_ flag: String?, flagName: String, env: String, default value: String) -> String {
        raw(flag: flag, flagName: flagName, env: env)?.value ?? value
    }

    /// A whole number within `range`.
    public func integer(_ flag: String?, flagName: String, env: String, default value: Int64,
                        range: ClosedRange<Int64>, unit: String = "") throws -> Int64 {
        guard let (text, origin) = raw(flag: flag, flagName: flagName, env: env) else { return value }
        let suffix = unit.isEmpty ? "" : " (\(unit))"
        guard let n = Int64(text.trimmingCharacters(in: " ")) else {
            throw ConfigError("\(origin): '\(text)' is not a whole number\(suffix)")
        }
        guard range.contains(n) else {
            throw ConfigError("\(origin): \(n) is out of range \(range.lowerBound)...\(range.upperBound)\(suffix)")
        }
        return n
    }

    /// `true` or `false` (also 1/0, yes/no, on/off).
    public func boolean(_ flag: String?, flagName: String, env: String, default value: Bool) throws -> Bool {
        guard let (text, origin) = raw(flag: flag, flagName: flagName, env: env) else { return value }
        switch text.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw ConfigError("\(origin): '\(text)' is not true or false")
        }
    }

    /// One of a fixed set of words.
    public func choice<T: RawRepresentable & CaseIterable>(_ flag: String?, flagName: String, env: String,
                                                           default value: T) throws -> T where T.RawValue == String {
        guard let (text, origin) = raw(flag: flag, flagName: flagName, env: env) else { return value }
        guard let v = T(rawValue: text.lowercased()) else {
            let allowed = T.allCases.map(\.rawValue).joined(separator: ", ")
            throw ConfigError("\(origin): '\(text)' is not one of \(allowed)")
        }
        return v
    }

    /// REDIS_URL / --redis-url (SharedSettings.redisURL), or the file
    /// REDIS_URL_FILE names; the password may come from REDIS_PASSWORD_FILE.
    /// Errors show the URL without its password.
    public func redisEndpoint() throws -> RedisEndpoint {
        var text = string(SharedSettings.redisURL, default: "redis://127.0.0.1:6379")
        var urlOrigin = origin(SharedSettings.redisURL)
        if let file = raw(SharedSettings.redisURLFile) {
            if let both = raw(SharedSettings.redisURL) {
                throw ConfigError("\(both.origin) and \(file.origin) are both set; give the URL one way")
            }
            text = try SettingSource.secret(file).trimmingCharacters(in: " \t\n\r")  // not "\r\n": one Character
            urlOrigin = "\(file.origin) (\(file.value))"
        }
        var endpoint: RedisEndpoint
        do {
            endpoint = try RedisEndpoint(url: text)
        } catch {
            throw ConfigError("\(urlOrigin): '\(RedisEndpoint.redacted(text))' \(error)")
        }
        let tlsSettings = [SharedSettings.redisCAFile, SharedSettings.redisCertFile, SharedSettings.redisKeyFile,
                           SharedSettings.redisTLSServerName].map { (setting: $0, value: raw($0)) }
        if endpoint.tls != nil {
            endpoint.tls?.caFile = tlsSettings[0].value?.value
            endpoint.tls?.certificateFile = tlsSettings[1].value?.value
            endpoint.tls?.keyFile = tlsSettings[2].value?.value
            endpoint.tls?.serverName = tlsSettings[3].value?.value
            for file in tlsSettings.prefix(3) {
                if let given = file.value, FileInput.read(given.value, maxBytes: 1 << 20) == nil {
                    throw ConfigError("\(given.origin): cannot read '\(given.value)'")
                }
            }
        } else if let given = tlsSettings.first(where: { $0.value != nil }) {
            throw ConfigError("\(given.value!.origin) is set, but \(urlOrigin) is not a rediss:// URL: TLS settings need TLS")
        }
        if let file = raw(SharedSettings.redisPasswordFile) {
            guard endpoint.password == nil else {
                throw ConfigError("\(urlOrigin) holds a password and \(file.origin) gives one too; give it one way")
            }
            endpoint.password = try SettingSource.secret(file, trimming: true)
        }
        let sentinels = raw(SharedSettings.sentinels), master = raw(SharedSettings.sentinelMaster)
        if let given = sentinels ?? master {
            guard let sentinels, let master else {
                let missing = sentinels == nil ? SharedSettings.sentinels : SharedSettings.sentinelMaster
                throw ConfigError("\(given.origin) is set without \(missing.env): give both, or a redis+sentinel:// URL")
            }
            guard endpoint.sentinel == nil, endpoint.cluster == nil, endpoint.socketPath == nil else {
                throw ConfigError("\(sentinels.origin) and \(origin(SharedSettings.redisURL)) '\(endpoint)' both say where "
                                  + "Redis is: with SPOOL_SENTINELS, REDIS_URL is a redis:// URL giving only credentials and database")
            }
            do {
                try endpoint.useSentinels(sentinels.value, master: master.value)
            } catch {
                throw ConfigError("\(sentinels.origin) / \(master.origin): \(error)")
            }
        }
        let sentinelUser = raw(SharedSettings.sentinelUsername), sentinelPassword = raw(SharedSettings.sentinelPassword)
        if endpoint.sentinel == nil, let given = sentinelUser ?? sentinelPassword {
            throw ConfigError("\(given.origin) is set, but \(origin(SharedSettings.redisURL)) is not a redis+sentinel:// URL "
                              + "and SPOOL_SENTINELS is not set")
        }
        endpoint.sentinel?.username = sentinelUser?.value
        endpoint.sentinel?.password = sentinelPassword?.value
        return endpoint
    }

    /// SPOOL_ENCRYPTION_KEY_FILE read and checked; nil when unset.
    public func fieldCipher() throws -> FieldCipher? {
        guard let file = raw(SharedSettings.encryptionKeyFile), !file.value.isEmpty else { return nil }
        do {
            return try FieldCipher(keyFileText: try SettingSource.secret(file), origin: "\(file.origin) (\(file.value))")
        } catch let e as FieldCipher.Invalid {
            throw ConfigError(e.description)
        }
    }

    /// The content of a secret file (a mounted Kubernetes Secret or compose
    /// secret); `trimming`: without the line break an editor adds at the end.
    static func secret(_ file: (value: String, origin: String), trimming: Bool = false) throws -> String {
        guard var text = FileInput.read(file.value, maxBytes: 65536) else {
            throw ConfigError("\(file.origin): cannot read '\(file.value)' (missing, unreadable, over 64 KiB or not UTF-8)")
        }
        if trimming {
            while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
        }
        guard !text.isEmpty else { throw ConfigError("\(file.origin): '\(file.value)' is empty") }
        return text
    }

    // MARK: - declared settings (see Setting)

    /// The raw text of a declared setting and where it came from (`--flag` or
    /// the variable), or nil when unset.
    public func raw(_ s: Setting) -> (value: String, origin: String)? {
        raw(flag: flagValue(s), flagName: s.flagName, env: s.env)
    }

    /// The value of the setting's flag on the command line, if given.
    private func flagValue(_ s: Setting) -> String? { s.flag.flatMap { flags[$0] } }

    /// The value of the setting's environment variable alone, if set (for a
    /// setting whose flag and variable take different forms, as `--handler`).
    public func environmentValue(_ s: Setting) -> String? { environment[s.env] }

    /// Where a setting comes from, as errors should name it: the flag when
    /// given, else the environment variable.
    public func origin(_ s: Setting) -> String { raw(s)?.origin ?? s.env }

    public func string(_ s: Setting, default value: String) -> String { raw(s)?.value ?? value }

    /// Every value of a repeatable flag.
    public func all(_ s: Setting) -> [String] { s.flag.map { flags.all($0) } ?? [] }

    /// A whole number within the setting's range.
    public func integer(_ s: Setting, default value: Int64) throws -> Int64 {
        try integer(flagValue(s), flagName: s.flagName, env: s.env, default: value,
                    range: s.range ?? Int64.min...Int64.max, unit: s.unit)
    }

    public func boolean(_ s: Setting, default value: Bool) throws -> Bool {
        try boolean(flagValue(s), flagName: s.flagName, env: s.env, default: value)
    }

    public func choice<T: RawRepresentable & CaseIterable>(_ s: Setting, default value: T) throws -> T where T.RawValue == String {
        try choice(flagValue(s), flagName: s.flagName, env: s.env, default: value)
    }

    // MARK: - the shared settings

    /// A key prefix: letters, digits and `_.-`, 1 to 32 characters (SharedSettings.prefix).
    public func prefix() throws -> String {
        let text = string(SharedSettings.prefix, default: "spool")
        guard Validation.isValidQueueName(text), text.utf8.count <= 32 else {
            throw ConfigError("\(origin(SharedSettings.prefix)): '\(text)' must be 1 to 32 of A-Z a-z 0-9 _ . -")
        }
        return text
    }
}

/// `host:port` for a listening address.
public struct ListenAddress: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var description: String { "\(host):\(port)" }

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":"), let p = Int(text[text.index(after: colon)...]),
              (0...65535).contains(p) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host.isEmpty ? "0.0.0.0" : host
        self.port = p
    }

    /// Reachable only from this machine: an address in 127.0.0.0/8, ::1 or
    /// localhost (a name such as 127.example.com is not).
    public var isLoopback: Bool {
        if host == "localhost" || host == "::1" { return true }
        var v4 = in_addr()
        return host.hasPrefix("127.") && inet_pton(AF_INET, host, &v4) == 1
    }
}

import Logging
#if canImport(Glibc)
import Glibc
#endif

/// What both binaries do at start about TLS to Redis and encryption at rest,
/// once their configuration is read: a `rediss://` certificate that will
/// never be trusted stops the start with the reason; the TLS relay gets its
/// logger; SPOOL_ENCRYPTION_KEY_FILE is read into `FieldCipher.shared`. Any
/// problem is printed as `program: reason` and the process exits with 2.
public enum StartupSecurity {
    public static func prepare(_ source: SettingSource, redis: RedisEndpoint, program: String) {
        do {
            try RedisTLS.checkAtStart(redis)
            FieldCipher.shared = try source.fieldCipher()
        } catch {
            FileOutput.stderr("\(program): \(error)")
            exit(2)
        }
        TLSRelay.shared.logger = Logger(label: "spool.tls")
    }
}

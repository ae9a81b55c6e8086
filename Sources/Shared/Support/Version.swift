/// Spool's version, printed by `--version` and logged at start. Raised with
/// each release (semantic versioning: the HTTP API and the Redis data layout
/// are the public contract).
public enum SpoolVersion {
    public static let current = "0.2.0"
}

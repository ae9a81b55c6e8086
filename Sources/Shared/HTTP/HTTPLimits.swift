/// Limits that keep slow, broken or hostile clients from holding the server.
public struct HTTPLimits {
    public init() {}

    /// Largest request body accepted (413 above it).
    public var maxBodyBytes: Int = 1 << 20
    /// Largest request head (request line and headers) accepted (431 above it).
    public var maxHeadBytes: Int = 16 * 1024
    /// A request must arrive whole within this time from its first byte (408
    /// after it); it also closes a keep-alive connection that stays idle this long.
    public var readTimeoutMs: Int = 10_000
    /// A response must drain to the client within this time.
    public var writeTimeoutMs: Int = 10_000
    /// Open connections per event loop; above it new connections are closed at once.
    public var maxConnectionsPerLoop: Int = 5_000
}

/// One parsed HTTP request, body included.
public struct HTTPRequest {
    public var method: String
    /// The path without its query string, percent-decoding not applied.
    public var path: String
    public var query: [String: String]
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    public var keepAlive: Bool

    public func header(_ name: String) -> String? {
        headers.first(where: { $0.name.lowercased() == name })?.value
    }

    /// Path segments, e.g. `/v1/jobs/abc` → ["v1", "jobs", "abc"].
    public var segments: [Substring] { path.split(separator: "/", omittingEmptySubsequences: true) }
}

/// A Lua script and the SHA-1 that EVALSHA names it by.
public struct LuaScript: Sendable {
    public let name: String
    public let source: String
    public let sha1: String

    public init(name: String, source: String) {
        self.name = name
        self.source = source
        self.sha1 = SHA1.hex(source)
    }
}

/// One typed call of a Lua script: which script, its KEYS and ARGV, and how
/// its reply becomes a Swift value. The same call runs over the blocking
/// connection (worker, tests) and the async one (API).
public protocol ScriptCall {
    associatedtype Output
    var script: LuaScript { get }
    var keys: [String] { get }
    var args: [String] { get }
    /// Turns the script's reply into the result. Error replies never reach
    /// here: `decode` maps them to `RedisError.server` first.
    func parse(_ reply: RedisReply) throws -> Output
}

/// The reply of a script did not have the shape its header promises.
public struct ScriptReplyError: Error, CustomStringConvertible {
    public let script: String
    public let reply: RedisReply
    public var description: String { "unexpected reply from script \(script): \(reply)" }
}

extension ScriptCall {
    /// The one place where a script's reply becomes a typed result or error.
    public func decode(_ reply: RedisReply) throws -> Output {
        if case .error(let message) = reply { throw RedisError.server(message) }
        return try parse(reply)
    }

    func unexpected(_ reply: RedisReply) -> ScriptReplyError {
        ScriptReplyError(script: script.name, reply: reply)
    }
}

extension RedisConnection {
    public func run<C: ScriptCall>(_ call: C) throws -> C.Output {
        try call.decode(try evalScript(call.script, keys: call.keys, args: call.args))
    }
}

extension AsyncRedisConnection {
    public func run<C: ScriptCall>(_ call: C, _ callback: @escaping (Result<C.Output, Error>) -> Void) {
        evalScript(call.script, keys: call.keys, args: call.args) { result in
            callback(Result { try call.decode(try result.get()) })
        }
    }
}

/// A Lua script and the SHA-1 that EVALSHA names it by.
///
/// Why scripts sent with EVALSHA, not one Redis Functions library: a node that
/// has never seen a script (a new Cluster primary after resharding, a replica
/// promoted after starting empty, a node after SCRIPT FLUSH) gets it at first
/// use, because both connections fall back to EVAL on NOSCRIPT. A Functions
/// library would have to be loaded on every primary (FUNCTION LOAD per node),
/// again on each node added or restored without it, with a version check on
/// each: one more thing to go wrong at every failover and resharding, for no
/// gain at run time (both run the same Lua at the same speed). Either way each
/// script declares every key it names in KEYS, all under one queue's hash tag,
/// so on Cluster a script runs on the one node that owns its slot. (The one
/// exception, complete_and_fetch with the limits it declares, is sent on one
/// Redis only: CallLimits.)
public struct LuaScript: Sendable {
    public let name: String
    public let source: String
    public let sha1: String

    public init(name: String, source: String) {
        self.name = name
        self.source = source
        self.sha1 = SHA1.hex(source)
    }

    /// A script made of the pieces it uses (each included once, after the
    /// pieces it uses in turn) and its own body.
    public init(name: String, uses pieces: [LuaPiece], body: String) {
        var included = Set<String>()
        var source = ""
        func include(_ piece: LuaPiece) {
            guard included.insert(piece.name).inserted else { return }
            piece.uses.forEach(include)
            source += "-- [\(piece.name)]\n" + piece.source + "\n"
        }
        pieces.forEach(include)
        self.init(name: name, source: source + "-- [\(name)]\n" + body)
    }
}

/// A named piece of Lua (local functions and constants) that scripts include
/// when they use it. A piece that is one script's algorithm lives next to that
/// script (FetchCall.claimJobs, CompleteCall.completeJob, FailCall.bury,
/// GiveBackCall.giveBack, SettleCall.receipts); the small helpers several
/// scripts share are in CommonLua.
public struct LuaPiece: Sendable {
    public let name: String
    public let source: String
    /// Pieces this one calls: included before it.
    public let uses: [LuaPiece]

    public init(_ name: String, uses: [LuaPiece] = [], _ source: String) {
        self.name = name
        self.uses = uses
        self.source = source
    }
}

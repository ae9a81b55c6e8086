/// A page of a queue's groups with jobs waiting, and how many each has: the
/// `groups` hash names them (HSCAN: a page may hold a few more or fewer than
/// asked), their lines' lengths give the counts. Groups whose lines are all
/// empty are left out (a field a version that counted jobs left behind).
///
/// Only the queue's own keys (one hash tag, one slot on Redis Cluster): the
/// lines are built from the job prefix, like every group script.
public struct ListGroupsCall: ScriptCall {
    public static let script = LuaScript(name: "list_groups", uses: [CommonLua.queueKeys, GroupLua.turns], body: #"""
-- KEYS[1..10], ARGV[1..5] the queue's keys (QueueKeys)
-- ARGV[6]  HSCAN cursor   ARGV[7] how many groups to scan
-- Output:  {next cursor ('0': done), group, waiting jobs, group, waiting jobs, ...}
local q = queue_keys()
local page = redis.call('HSCAN', groups_hash(q), ARGV[6], 'COUNT', ARGV[7])
local out = {page[1]}
local flat = page[2]
for i = 1, #flat, 2 do
  local waiting = 0
  for rank = 1, 4 do waiting = waiting + redis.call('LLEN', group_line(q, flat[i], rank)) end
  if waiting > 0 then
    out[#out + 1] = flat[i]
    out[#out + 1] = waiting
  end
end
return out
"""#)

    public struct Page: Equatable {
        public var groups: [(name: String, waiting: Int64)]
        /// Nil once every group was listed.
        public var nextCursor: String?

        public static func == (a: Page, b: Page) -> Bool {
            a.nextCursor == b.nextCursor && a.groups.elementsEqual(b.groups) { $0.name == $1.name && $0.waiting == $1.waiting }
        }
    }

    public let queue: String
    public let cursor: UInt64
    public let count: Int
    let schema: KeySchema

    public init(schema: KeySchema, queue: String, cursor: UInt64, count: Int) {
        self.schema = schema
        self.queue = queue
        self.cursor = cursor
        self.count = count
    }

    public var script: LuaScript { ListGroupsCall.script }
    public var keys: [String] { schema.queueKeys(queue).keys }
    public var args: [String] { schema.queueKeys(queue).args + [String(cursor), String(count)] }

    public func parse(_ reply: RedisReply) throws -> Page {
        guard let parts = reply.array, let next = parts.first?.string, parts.count % 2 == 1 else { throw unexpected(reply) }
        var groups: [(name: String, waiting: Int64)] = []
        var i = 1
        while i + 1 < parts.count {
            guard let name = parts[i].string, let waiting = parts[i + 1].int else { throw unexpected(reply) }
            groups.append((name, waiting))
            i += 2
        }
        return Page(groups: groups, nextCursor: next == "0" ? nil : next)
    }
}

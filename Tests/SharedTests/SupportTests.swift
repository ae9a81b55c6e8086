import XCTest
@testable import Shared

final class TimestampTests: XCTestCase {
    func testFormatsUTCWithMilliseconds() {
        XCTAssertEqual(Timestamp.format(millis: 0), "1970-01-01T00:00:00.000Z")
        XCTAssertEqual(Timestamp.format(millis: 1_795_880_055_123), "2026-11-28T15:34:15.123Z")
        XCTAssertEqual(Timestamp.format(millis: 951_782_400_000), "2000-02-29T00:00:00.000Z")
    }

    func testParsesOffsetsAndFractions() {
        XCTAssertEqual(Timestamp.parse("2026-11-28T15:34:15.123Z"), 1_795_880_055_123)
        XCTAssertEqual(Timestamp.parse("2026-11-28T16:34:15.1+01:00"), 1_795_880_055_100)
        XCTAssertEqual(Timestamp.parse("2026-11-28T15:34:15Z"), 1_795_880_055_000)
        XCTAssertEqual(Timestamp.parse("2026-11-28T15:34:15.123456789Z"), 1_795_880_055_123)
    }

    func testRejectsMalformedTimestamps() {
        for bad in ["", "2026-11-28", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-28T14:14:15",
                    "2026-11-28T25:00:00Z", "2026-11-28T14:14:15.Z", "2026-11-28 14:14:15Z", "2026-11-28T14:14:15Zjunk"] {
            XCTAssertNil(Timestamp.parse(bad), bad)
        }
    }

    func testRoundTrip() {
        for ms: Int64 in [0, 1, 86_399_999, 1_700_000_000_000, 4_102_444_800_000] {
            XCTAssertEqual(Timestamp.parse(Timestamp.format(millis: ms)), ms)
        }
    }
}

final class SHA1Tests: XCTestCase {
    func testKnownVectors() {
        XCTAssertEqual(SHA1.hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        XCTAssertEqual(SHA1.hex("abc"), "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(SHA1.hex(String(repeating: "a", count: 1000)), "291e9a6c66994949b57ba5e650361e98fc36b1ba")
    }
}

final class JobIDTests: XCTestCase {
    func testCarriesTheQueueAndParsesBack() throws {
        let id = JobID.generate(queue: "emails.v2")
        XCTAssertTrue(id.text.hasPrefix("emails.v2~"))
        let parsed = try XCTUnwrap(JobID(parsing: id.text))
        XCTAssertEqual(parsed.queue, "emails.v2")
        XCTAssertEqual(parsed, id)
    }

    func testIdsAreUniqueAndSortByTime() {
        let a = JobID.generate(queue: "q", nowMillis: 1_000)
        let b = JobID.generate(queue: "q", nowMillis: 2_000)
        XCTAssertLessThan(a.text, b.text)
        XCTAssertEqual(Set((0..<1000).map { _ in JobID.generate(queue: "q").text }).count, 1000)
    }

    func testRejectsWhatIsNotAnId() {
        for bad in ["", "q", "q~", "q~short", "~01M81YVWNZR77G18MNQ3BGA5QK", "bad queue~01M81YVWNZR77G18MNQ3BGA5QK",
                    "q~01M81YVWNZR77G18MNQ3BGA5QU", "q~01m81yvwnzr77g18mnq3bga5qk"] {
            XCTAssertNil(JobID(parsing: bad), bad)
        }
    }
}

final class ValidationTests: XCTestCase {
    func testQueueNames() {
        for ok in ["a", "emails", "A-b_c.d", String(repeating: "x", count: 64)] { XCTAssertTrue(Validation.isValidQueueName(ok), ok) }
        for bad in ["", "a b", "a:b", "a~b", "é", String(repeating: "x", count: 65), "{q}"] {
            XCTAssertFalse(Validation.isValidQueueName(bad), bad)
        }
    }

    func testJobTypes() {
        for ok in ["noop", "mail:send", "a.b-c_d", String(repeating: "t", count: 128)] { XCTAssertTrue(Validation.isValidJobType(ok), ok) }
        for bad in ["", "a b", "a/b", String(repeating: "t", count: 129)] { XCTAssertFalse(Validation.isValidJobType(bad), bad) }
    }
}

final class RedisEndpointTests: XCTestCase {
    func testParsesEveryPart() throws {
        let e = try RedisEndpoint(url: "redis://user:p%40ss@cache.local:6380/3")
        XCTAssertEqual(e.host, "cache.local")
        XCTAssertEqual(e.port, 6380)
        XCTAssertEqual(e.username, "user")
        XCTAssertEqual(e.password, "p@ss")
        XCTAssertEqual(e.database, 3)
        XCTAssertFalse(e.description.contains("p@ss"), "the password must not be logged")
        let bare = try RedisEndpoint(url: "redis://:secret@10.0.0.1")
        XCTAssertEqual(bare.password, "secret")
        XCTAssertNil(bare.username)
        XCTAssertEqual(bare.port, 6379)
    }

    func testReadsTheURLAsRFC3986Does() throws {
        // A user alone is a user, not a password.
        let user = try RedisEndpoint(url: "redis://app@cache.local")
        XCTAssertEqual(user.username, "app")
        XCTAssertNil(user.password)
        XCTAssertEqual(user.handshake, [["AUTH", "app", ""]])
        let v6 = try RedisEndpoint(url: "redis://[::1]:6390")
        XCTAssertEqual(v6.host, "::1")
        XCTAssertEqual(v6.port, 6390)
        XCTAssertEqual(v6.address, "[::1]:6390")
        XCTAssertEqual(try RedisEndpoint(url: "redis://[::1]").port, 6379)
        let unix = try RedisEndpoint(url: "unix:///run/redis/redis.sock?db=2")
        XCTAssertEqual(unix.socketPath, "/run/redis/redis.sock")
        XCTAssertEqual(unix.database, 2)
        let unixAuth = try RedisEndpoint(url: "unix://app:s%3Acret@/tmp/r.sock")
        XCTAssertEqual(unixAuth.username, "app")
        XCTAssertEqual(unixAuth.password, "s:cret")
        XCTAssertEqual(unixAuth.socketPath, "/tmp/r.sock")
        XCTAssertFalse(unixAuth.description.contains("cret"))
        XCTAssertEqual(try RedisEndpoint(url: "redis://h:6379?db=4").database, 4)
    }

    func testRedissIsRedisOverTLSAndDescribesItself() throws {
        let e = try RedisEndpoint(url: "rediss://app:s3cret@cache.example:6380/2")
        XCTAssertNotNil(e.tls)
        XCTAssertEqual(e.host, "cache.example")
        XCTAssertEqual(e.port, 6380)
        XCTAssertEqual(e.database, 2)
        XCTAssertEqual(e.description, "rediss://app:***@cache.example:6380/2")
        XCTAssertNil(try RedisEndpoint(url: "redis://h").tls)
    }

    func testRedactedHidesThePasswordEvenOfAURLThatDoesNotParse() {
        XCTAssertEqual(RedisEndpoint.redacted("redis://:pw@h:notaport"), "redis://:***@h:notaport")
        XCTAssertEqual(RedisEndpoint.redacted("redis://app:p@ss@h:1"), "redis://app:***@h:1")
        XCTAssertEqual(RedisEndpoint.redacted("redis://h:1"), "redis://h:1")
        XCTAssertEqual(RedisEndpoint.redacted("redis://app@h"), "redis://app@h")
        XCTAssertEqual(RedisEndpoint.redacted("junk:secret@x"), "junk:***@x")
    }

    func testNoErrorAboutAURLQuotesItsPassword() {
        for url in ["redis://:q7zk?w9vy@host:notaport", "redis://u:q7zk/w9vy@h:notaport", "redis+sentinel://:q7zk/w9vy@s1/m/x",
                    "redis+cluster://:q7zk?w9vy@h1:70000", "rediss://:q7zk?w9vy@host:x"] {
            XCTAssertThrowsError(try RedisEndpoint(url: url), url) { error in
                for fragment in ["q7zk", "w9vy"] where "\(error)".contains(fragment) {
                    XCTFail("\(url): the error '\(error)' quotes '\(fragment)' of the password")
                }
            }
        }
        // Lenient: an unencoded '?' or '/' in a password is still the password.
        XCTAssertEqual(try RedisEndpoint(url: "redis://:a?b/c@h:7").password, "a?b/c")
    }

    func testLoopbackMeansALoopbackAddressNotANameThatLooksLikeOne() {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "localhost"] {
            XCTAssertTrue(ListenAddress(host: host, port: 1).isLoopback, host)
        }
        for host in ["0.0.0.0", "127.example.com", "10.0.0.1", "::", "127.0.0.1.nip.io"] {
            XCTAssertFalse(ListenAddress(host: host, port: 1).isLoopback, host)
        }
    }

    func testRejectsBadURLs() {
        for bad in ["http://x", "rediss+sentinel://s1/m", "rediss+cluster://h1", "redis://x:0", "redis://x:99999", "redis://x:abc", "redis://x/-1",
                    "redis://::1:6379", "redis://[::1", "unix://relative.sock", "unix://", "redis://h?timeout=3",
                    "redis://u:%zz@h", "redis://h:6379?db=x",
                    "redis+sentinel://s1:26379", "redis+sentinel://s1,/m", "redis+sentinel://s1:0/m",
                    "redis+sentinel://s1/", "redis+sentinel://s1/m/x", "redis+sentinel://s1/m?timeout=1",
                    "redis+cluster://", "redis+cluster://h1/0", "redis+cluster://h1?db=1", "redis+cluster://h1,,h2",
                    "redis+cluster://h1:70000"] {
            XCTAssertThrowsError(try RedisEndpoint(url: bad), bad)
        }
    }

    func testSentinelURLNamesTheSentinelsTheMasterAndTheDataNodesCredentials() throws {
        let e = try RedisEndpoint(url: "redis+sentinel://app:p%40ss@s1:26380,[::1],s3/my%2Dmaster/2")
        let sentinel = try XCTUnwrap(e.sentinel)
        XCTAssertEqual(sentinel.nodes.map(\.host), ["s1", "::1", "s3"])
        XCTAssertEqual(sentinel.nodes.map(\.port), [26380, 26379, 26379])
        XCTAssertEqual(sentinel.masterName, "my-master")
        XCTAssertEqual(e.username, "app")
        XCTAssertEqual(e.password, "p@ss")
        XCTAssertEqual(e.database, 2)
        XCTAssertEqual(e.description, "redis+sentinel://app:***@s1:26380,[::1]:26379,s3:26379/my-master/2")
        XCTAssertNil(sentinel.password, "the sentinels' own password is a setting of its own")
        XCTAssertEqual(try RedisEndpoint(url: "redis+sentinel://s1/m?db=3").database, 3)
    }

    func testClusterURLNamesTheSeedsAndTheNodesCredentials() throws {
        let e = try RedisEndpoint(url: "redis+cluster://app:s%3Acret@n1:7000,[::1]:7001,n3")
        XCTAssertEqual(e.cluster, [.init(host: "n1", port: 7000), .init(host: "::1", port: 7001), .init(host: "n3", port: 6379)])
        XCTAssertEqual(e.password, "s:cret")
        XCTAssertEqual(e.description, "redis+cluster://app:***@n1:7000,[::1]:7001,n3:6379")
        let node = e.clusterNode(.init(host: "10.0.0.5", port: 7005))
        XCTAssertNil(node.cluster)
        XCTAssertEqual(node.address, "10.0.0.5:7005")
        XCTAssertEqual(node.username, "app")
        XCTAssertEqual(node.password, "s:cret")
    }

    /// Slots as Redis computes them (`CLUSTER KEYSLOT`); the e2e cluster test
    /// compares more keys with a live cluster.
    func testClusterSlotsFollowTheHashTag() {
        XCTAssertEqual(ClusterSlot.of("foo"), 12182)
        XCTAssertEqual(ClusterSlot.of("bar"), 5061)
        XCTAssertEqual(ClusterSlot.of("{foo}.anything"), 12182)
        XCTAssertEqual(ClusterSlot.of("x{}{foo}"), ClusterSlot.of("x{}{foo}"))
        XCTAssertNotEqual(ClusterSlot.of("x{}{foo}"), 12182, "an empty first tag means no tag: the whole key counts")
        let schema = KeySchema(prefix: "spool")
        let slot = ClusterSlot.of(schema.wake("emails"))
        XCTAssertEqual(ClusterSlot.of(schema.job(JobID.generate(queue: "emails"))), slot)
        XCTAssertEqual(ClusterSlot.of(command: ["EVALSHA", "abc", "2", schema.lease("emails"), "x"]), slot)
        XCTAssertNil(ClusterSlot.of(command: ["EVALSHA", "abc", "0", "arg"]))
        XCTAssertNil(ClusterSlot.of(command: ["WAIT", "1", "100"]))
        XCTAssertEqual(ClusterSlot.of(command: ["HGETALL", "foo"]), 12182)
    }

    /// On a cluster every script call of a queue names the slot guard last,
    /// in its queue's slot; other commands and untagged keys are left alone.
    func testTheSlotGuardIsAppendedToQueueScriptsOnly() {
        let schema = KeySchema(prefix: "spool")
        let call = ["EVALSHA", "abc", "2", schema.lease("q"), schema.wake("q"), "arg1"]
        XCTAssertEqual(ClusterSlot.withSlotGuard(call),
                       ["EVALSHA", "abc", "3", schema.lease("q"), schema.wake("q"), schema.slotGuard("q"), "arg1"])
        XCTAssertEqual(ClusterSlot.of(schema.slotGuard("q")), ClusterSlot.of(schema.lease("q")))
        for unchanged in [["EVALSHA", "abc", "1", schema.queues, "x"], ["EVALSHA", "abc", "0", "x"],
                          ["HGETALL", schema.job(JobID.generate(queue: "q"))]] {
            XCTAssertEqual(ClusterSlot.withSlotGuard(unchanged), unchanged)
        }
    }

    /// Redirections as both cluster routers read them.
    func testClusterRedirectionsAreRead() {
        let asked = RedisEndpoint.Node(host: "10.0.0.1", port: 7000)
        guard case .moved(3999, let to)? = ClusterReply(.error("MOVED 3999 10.0.0.2:7001"), askedAt: asked, redirects: 0)
        else { return XCTFail("MOVED not read") }
        XCTAssertEqual(to, .init(host: "10.0.0.2", port: 7001))
        guard case .ask(7, let here)? = ClusterReply(.error("ASK 7 :7002"), askedAt: asked, redirects: 0)
        else { return XCTFail("ASK not read") }
        XCTAssertEqual(here, .init(host: "10.0.0.1", port: 7002), "no host: the node asked")
        guard case .tryAgain? = ClusterReply(.error("MOVED 1 h:1"), askedAt: asked, redirects: ClusterReply.maxRedirects)
        else { return XCTFail("a redirection past the limit is waited out") }
        guard case .tryAgain? = ClusterReply(.error("CLUSTERDOWN The cluster is down"), askedAt: asked, redirects: 0)
        else { return XCTFail("CLUSTERDOWN not read") }
        XCTAssertNil(ClusterReply(.error("ERR unknown command"), askedAt: asked, redirects: 0))
        XCTAssertNil(ClusterReply(.bulk("MOVED 1 h:1"), askedAt: asked, redirects: 0))
        XCTAssertEqual((0...7).map { ClusterReply.retryDelayMs(after: $0) }, [10, 20, 40, 80, 160, 200, 200, 200])
    }

    /// CLUSTER SLOTS as Redis 7 answers it: an empty or null host is the node
    /// asked, `?` a node without that endpoint type (left unserved).
    func testClusterSlotsRepliesBecomeAMap() throws {
        func range(_ a: Int64, _ b: Int64, _ host: RedisReply, _ port: Int64) -> RedisReply {
            .array([.integer(a), .integer(b), .array([host, .integer(port), .bulk("id"), .array([])])])
        }
        let reply = RedisReply.array([range(0, 5460, .bulk("10.0.0.1"), 7000), range(5461, 10922, .bulk(""), 7001),
                                      range(10923, 16000, .null, 7002), range(16001, 16383, .bulk("?"), 7003)])
        let map = try XCTUnwrap(ClusterMap(slotsReply: reply, askedHost: "seed"))
        XCTAssertEqual(map.primary(forSlot: 0), .init(host: "10.0.0.1", port: 7000))
        XCTAssertEqual(map.primary(forSlot: 6000), .init(host: "seed", port: 7001))
        XCTAssertEqual(map.primary(forSlot: 16000), .init(host: "seed", port: 7002))
        XCTAssertNil(map.primary(forSlot: 16001))
        XCTAssertEqual(map.unservedSlots, 383)
        XCTAssertNil(ClusterMap(slotsReply: .array([]), askedHost: "seed"))
        XCTAssertNil(ClusterMap(slotsReply: .error("ERR This instance has cluster support disabled"), askedHost: "seed"))
    }
}

final class SettingSourceTests: XCTestCase {
    func testFlagWinsOverEnvWhichWinsOverDefault() throws {
        let s = SettingSource(environment: ["SPOOL_X": "7"])
        XCTAssertEqual(try s.integer("9", flagName: "--x", env: "SPOOL_X", default: 1, range: 0...10), 9)
        XCTAssertEqual(try s.integer(nil, flagName: "--x", env: "SPOOL_X", default: 1, range: 0...10), 7)
        XCTAssertEqual(try SettingSource(environment: [:]).integer(nil, flagName: "--x", env: "SPOOL_X", default: 1, range: 0...10), 1)
    }

    func testErrorsNameTheSettingAndTheProblem() {
        let s = SettingSource(environment: ["SPOOL_X": "abc", "SPOOL_Y": "50", "SPOOL_LOG_FORMAT": "xml", "REDIS_URL": "http://h"])
        XCTAssertThrowsError(try s.integer(nil, flagName: "--x", env: "SPOOL_X", default: 1, range: 0...10)) {
            XCTAssertEqual("\($0)", "SPOOL_X: 'abc' is not a whole number")
        }
        XCTAssertThrowsError(try s.integer(nil, flagName: "--y", env: "SPOOL_Y", default: 1, range: 0...10, unit: "ms")) {
            XCTAssertEqual("\($0)", "SPOOL_Y: 50 is out of range 0...10 (ms)")
        }
        XCTAssertThrowsError(try s.choice(nil, flagName: "--log-format", env: "SPOOL_LOG_FORMAT", default: LogSetup.Format.json)) {
            XCTAssertEqual("\($0)", "SPOOL_LOG_FORMAT: 'xml' is not one of json, text")
        }
        XCTAssertThrowsError(try s.redisEndpoint()) { XCTAssertTrue("\($0)".hasPrefix("REDIS_URL: 'http://h'")) }
        XCTAssertThrowsError(try SettingSource(environment: ["SPOOL_PREFIX": "a b"]).prefix()) {
            XCTAssertTrue("\($0)".hasPrefix("SPOOL_PREFIX:"))
        }
    }

    func testDeclaredSettingsNameTheFlagWhenGivenElseTheVariable() throws {
        let lease = Setting("lease-ms", env: "SPOOL_LEASE_MS", default: "30000", range: 1000...60_000, unit: "milliseconds", "Lease")
        let flags = try XCTUnwrap(try CommandLineOptions.parse(["--lease-ms", "5"], options: Setting.commandLine([lease])))
        XCTAssertThrowsError(try SettingSource(environment: ["SPOOL_LEASE_MS": "2000"], flags: flags).integer(lease, default: 1)) {
            XCTAssertEqual("\($0)", "--lease-ms: 5 is out of range 1000...60000 (milliseconds)")
        }
        XCTAssertThrowsError(try SettingSource(environment: ["SPOOL_LEASE_MS": "5"]).integer(lease, default: 1)) {
            XCTAssertEqual("\($0)", "SPOOL_LEASE_MS: 5 is out of range 1000...60000 (milliseconds)")
        }
        XCTAssertEqual(try SettingSource(environment: [:]).integer(lease, default: 30_000), 30_000)
        XCTAssertEqual(lease.option?.help, "Lease [SPOOL_LEASE_MS, default 30000]")
        XCTAssertEqual(Setting.markdownTable([lease]).split(separator: "\n").last, "| `--lease-ms` | `SPOOL_LEASE_MS` | 30000 | Lease |")
    }

    func testListenAddress() {
        XCTAssertEqual(ListenAddress(parsing: "0.0.0.0:8080"), ListenAddress(host: "0.0.0.0", port: 8080))
        XCTAssertEqual(ListenAddress(parsing: "[::1]:80"), ListenAddress(host: "::1", port: 80))
        XCTAssertNil(ListenAddress(parsing: "localhost"))
        XCTAssertNil(ListenAddress(parsing: "h:70000"))
    }
}

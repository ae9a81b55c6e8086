/// xoshiro256**: a fast generator for job ids, seeded once from the system's
/// random source. Ids need to be unique, not secret; reading the system source
/// for every id cost two system calls per enqueue.
public struct FastRandom: RandomNumberGenerator {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init() {
        var seed = SystemRandomNumberGenerator()
        s = (seed.next(), seed.next(), seed.next(), seed.next())
        if s == (0, 0, 0, 0) { s.0 = 1 }
    }

    public mutating func next() -> UInt64 {
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}

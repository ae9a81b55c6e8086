/// Name rules shared by the API (to reject bad input) and the worker (to check its flags).
public enum Validation {
    /// Queue names: `[A-Za-z0-9_.-]{1,64}`.
    public static func isValidQueueName(_ name: String) -> Bool {
        let u = name.utf8
        return (1...64).contains(u.count) && u.allSatisfy { isAlnum($0) || $0 == 0x5F || $0 == 0x2E || $0 == 0x2D }
    }

    /// Job types: `[A-Za-z0-9_.:-]{1,128}`.
    public static func isValidJobType(_ type: String) -> Bool {
        let u = type.utf8
        return (1...128).contains(u.count)
            && u.allSatisfy { isAlnum($0) || $0 == 0x5F || $0 == 0x2E || $0 == 0x3A || $0 == 0x2D }
    }

    /// Limit names, `[A-Za-z0-9_.:-]{1,80}` (no braces: a limit's name is its
    /// keys' hash tag), and tenant groups, the same up to 64 (a group's cap is
    /// the limit `group:<name>`).
    public static func isValidLimitName(_ name: String, maxLength: Int = 80) -> Bool {
        let u = name.utf8
        return (1...maxLength).contains(u.count)
            && u.allSatisfy { isAlnum($0) || $0 == 0x5F || $0 == 0x2E || $0 == 0x3A || $0 == 0x2D }
    }

    static func isAlnum(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
    }
}

/// Job priorities, most urgent first. Workers drain a queue's lists in this order.
public enum Priority: String, CaseIterable, Sendable {
    case urgent, high, normal, low

    /// 1-based position, as the Lua scripts number the pending lists.
    public var index: Int { Priority.allCases.firstIndex(of: self)! + 1 }
}

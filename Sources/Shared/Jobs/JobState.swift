/// Where a job is in its life.
public enum JobState: String, Sendable {
    case queued, scheduled, running, succeeded, dead, cancelled

    public var isTerminal: Bool { self == .succeeded || self == .dead || self == .cancelled }
}

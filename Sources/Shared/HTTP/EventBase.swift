import CLibevent

/// Creates libevent loops for Spool's servers.
public enum EventBase {
    /// A loop with epoll's change list on: an event added and removed within
    /// one pass of the loop (a write that completes at once) costs no
    /// epoll_ctl system call.
    public static func make() -> OpaquePointer? {
        guard let cfg = event_config_new() else { return event_base_new() }
        defer { event_config_free(cfg) }
        event_config_set_flag(cfg, Int32(EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST.rawValue))
        return event_base_new_with_config(cfg)
    }
}

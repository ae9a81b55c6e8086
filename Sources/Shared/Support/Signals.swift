#if canImport(Glibc)
import Glibc
#endif

/// Termination signals are blocked in every thread and taken by one thread
/// with sigwait, so a handler never runs at an arbitrary point of the code.
public enum Signals {
    /// Call first in main, before any thread starts (threads inherit the mask).
    /// `andHangup`: SIGHUP too, for a process that reloads on it
    /// (`waitForTermination(onHangup:)`); others keep its default action.
    public static func blockTerminationSignals(andHangup: Bool = false) {
        var set = terminationSet()
        if andHangup { sigaddset(&set, SIGHUP) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)
    }

    /// Blocks until SIGTERM or SIGINT arrives; returns its name. Each SIGHUP
    /// meanwhile calls `onHangup` (when given; SIGHUP must have been blocked).
    public static func waitForTermination(onHangup: (() -> Void)? = nil) -> String {
        var set = terminationSet()
        if onHangup != nil { sigaddset(&set, SIGHUP) }
        var sig: Int32 = 0
        while true {
            guard sigwait(&set, &sig) == 0 else { continue }
            if sig == SIGHUP {
                onHangup?()
                continue
            }
            return sig == SIGTERM ? "SIGTERM" : "SIGINT"
        }
    }

    /// Waits up to `timeoutMs` for SIGTERM or SIGINT: the signal, or nil.
    public static func waitForTermination(timeoutMs: Int) -> Int32? {
        var set = terminationSet()
        var timeout = timespec(tv_sec: timeoutMs / 1000, tv_nsec: (timeoutMs % 1000) * 1_000_000)
        let sig = sigtimedwait(&set, nil, &timeout)
        return sig == SIGTERM || sig == SIGINT ? sig : nil
    }

    static func terminationSet() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        return set
    }
}

public enum FileOutput {
    public static func stderr(_ line: String) {
        // write(2) on fd 2: one call per line, and no C global to share across threads.
        var text = line + "\n"
        _ = text.withUTF8 { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}

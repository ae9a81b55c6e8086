import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A swift-log handler that writes one JSON object per line to stdout:
/// `ts`, `level`, `msg`, `service`, then the metadata (job_id, queue, …).
///
/// Each line goes out in one write(2), so lines from many threads never
/// interleave. Numbers given as metadata (`.stringConvertible(Int)`) stay JSON numbers.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let service: String

    public init(service: String, level: Logger.Level) {
        self.service = service
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var w = JSONWriter()
        w.beginObject()
        w.field("ts", Timestamp.format(millis: Clock.nowMillis()))
        w.field("level", event.level.rawValue)
        w.field("msg", event.message.description)
        w.field("service", service)
        let merged = event.metadata.map { metadata.merging($0) { _, new in new } } ?? metadata
        for key in merged.keys.sorted() {
            w.key(key)
            JSONLogHandler.write(merged[key]!, to: &w)
        }
        w.endObject()
        LogOutput.writeLine(w.text)
    }

    static func write(_ value: Logger.Metadata.Value, to w: inout JSONWriter) {
        switch value {
        case .string(let s): w.raw(JSONWriter.quoted(s))
        case .stringConvertible(let c):
            if c is any BinaryInteger || c is Double { w.raw(c.description) } else { w.raw(JSONWriter.quoted(c.description)) }
        case .array(let items):
            w.beginArray()
            for item in items { write(item, to: &w) }
            w.endArray()
        case .dictionary(let dict):
            w.beginObject()
            for key in dict.keys.sorted() {
                w.key(key)
                write(dict[key]!, to: &w)
            }
            w.endObject()
        }
    }
}

/// A line for people at a terminal: `15:34:45.123 info  job succeeded job_id=… queue=…`.
public struct TextLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let service: String

    public init(service: String, level: Logger.Level) {
        self.service = service
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let time = Timestamp.format(millis: Clock.nowMillis()).dropFirst(11).dropLast()
        let merged = event.metadata.map { metadata.merging($0) { _, new in new } } ?? metadata
        let fields = merged.keys.sorted().map { "\($0)=\(merged[$0]!)" }.joined(separator: " ")
        let level = event.level.rawValue + String(repeating: " ", count: max(0, 8 - event.level.rawValue.count))
        LogOutput.writeLine("\(time) \(level) [\(service)] \(event.message) \(fields)")
    }
}

enum LogOutput {
    static func writeLine(_ line: String) {
        var bytes = Array(line.utf8)
        bytes.append(0x0A)
        bytes.withUnsafeBytes { buf in
            var offset = 0
            while offset < buf.count {
                let n = Glibc.write(1, buf.baseAddress! + offset, buf.count - offset)
                if n <= 0 { if n < 0 && errno == EINTR { continue }; return }
                offset += n
            }
        }
    }
}

/// Sets up swift-log for a binary: JSON lines, or text for people.
public enum LogSetup {
    public enum Format: String, CaseIterable, Sendable { case json, text }

    /// JSON lines for machines, unless stdout is a terminal (a person runs it).
    public static var defaultFormat: Format { isatty(1) == 1 ? .text : .json }

    public static func bootstrap(service: String, level: Logger.Level, format: Format) {
        LoggingSystem.bootstrap { _ in
            switch format {
            case .json: return JSONLogHandler(service: service, level: level)
            case .text: return TextLogHandler(service: service, level: level)
            }
        }
    }
}

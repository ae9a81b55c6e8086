#if canImport(Glibc)
import Glibc
#endif

/// The command line of Spool's binaries: options with a value, given as
/// `--name value` or `--name=value` (the last one wins, or all of them for a
/// repeatable option), `--help` and `--version`.
///
/// Why not swift-argument-parser, which the project uses elsewhere: it brings
/// FoundationEssentials into the binary. A static binary that only parses one
/// flag with it idles at 9.3 MB RSS against 5.0 MB without (measured on the
/// 2-core dev machine) — most of the idle worker's 10 MB budget. Spool's
/// binaries take options with values only, and every value is checked in one
/// place (SettingSource) with a message naming the setting, so this is all
/// they need.
public struct CommandLineOptions {
    public struct Option: Sendable {
        public let name: String
        public let help: String
        public let repeatable: Bool

        public init(_ name: String, _ help: String, repeatable: Bool = false) {
            self.name = name
            self.help = help
            self.repeatable = repeatable
        }
    }

    public struct UsageError: Error, CustomStringConvertible {
        public let description: String
    }

    private var values: [String: [String]] = [:]

    public init() {}

    /// The value of `--name` (the last one given), or nil.
    public subscript(name: String) -> String? { values[name]?.last }

    /// Every value of a repeatable option, in order.
    public func all(_ name: String) -> [String] { values[name] ?? [] }

    /// Set when `--version` was given (the process prints it and exits).
    public private(set) var versionAsked = false

    /// Parses `arguments` (without the program name); nil means `--help` was asked.
    public static func parse(_ arguments: [String], options: [Option]) throws -> CommandLineOptions? {
        var result = CommandLineOptions()
        let known = Dictionary(uniqueKeysWithValues: options.map { ($0.name, $0) })
        var i = 0
        while i < arguments.count {
            let arg = arguments[i]
            i += 1
            if arg == "--help" || arg == "-h" { return nil }
            if arg == "--version" {
                result.versionAsked = true
                continue
            }
            guard arg.hasPrefix("--"), arg.count > 2 else {
                throw UsageError(description: "unexpected argument '\(arg)'; options look like --name value")
            }
            var name = String(arg.dropFirst(2))
            var value: String?
            if let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard known[name] != nil else { throw UsageError(description: "unknown option '--\(name)'; see --help") }
            if value == nil {
                guard i < arguments.count else { throw UsageError(description: "option '--\(name)' needs a value") }
                value = arguments[i]
                i += 1
            }
            result.values[name, default: []].append(value!)
        }
        return result
    }

    /// The help text: the usage line, then each option with its help.
    public static func help(program: String, abstract: String, options: [Option], footer: [String] = []) -> String {
        var lines = ["\(abstract)", "", "USAGE: \(program) [--option value] ...", "", "OPTIONS:"]
        for o in options {
            lines.append("  --\(o.name) <value>\(o.repeatable ? " (repeatable)" : "")")
            lines.append("        \(o.help)")
        }
        lines.append("  --version")
        lines.append("        Print the version and exit.")
        lines.append("  -h, --help")
        lines.append("        Show this help.")
        lines += footer
        return lines.joined(separator: "\n")
    }

    /// Parses the process' arguments for a binary whose settings are
    /// `settings` (`own` are the ones not shared by both binaries): as below,
    /// and `--settings-markdown shared|own` prints that table and exits 0.
    public static func parseOrExit(program: String, abstract: String, settings: [Setting], own: [Setting]) -> CommandLineOptions {
        let envOnly = settings.filter { $0.flag == nil }
        let footer = envOnly.isEmpty ? [] : ["", "ENVIRONMENT ONLY:"] + envOnly.flatMap {
            ["  \($0.env)", "        \($0.help) [default \($0.defaultText)]"]
        }
        let parsed = parseOrExit(program: program, abstract: abstract, options: Setting.commandLine(settings), footer: footer)
        if let which = parsed["settings-markdown"] {
            switch which {
            case "shared": print(Setting.markdownTable(SharedSettings.all))
            case "own": print(Setting.markdownTable(own))
            default:
                FileOutput.stderr("\(program): --settings-markdown: '\(which)' is not one of shared, own")
                exit(64)
            }
            exit(0)
        }
        return parsed
    }

    /// Parses the process' arguments: prints the help and exits 0 for
    /// `--help`, prints the error and exits 64 (usage error) for a bad command line.
    public static func parseOrExit(program: String, abstract: String, options: [Option], footer: [String] = []) -> CommandLineOptions {
        do {
            if let parsed = try parse(Array(CommandLine.arguments.dropFirst()), options: options) {
                if parsed.versionAsked {
                    print("\(program) \(SpoolVersion.current)")
                    exit(0)
                }
                return parsed
            }
            print(help(program: program, abstract: abstract, options: options, footer: footer))
            exit(0)
        } catch {
            FileOutput.stderr("\(program): \(error)")
            exit(64)
        }
    }
}

import ArgumentParser

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Adds options from `DOTPROXY_<NAME>` environment variables to the command line.
///
/// `DOTPROXY_UPSTREAM=9.9.9.9` becomes `--upstream 9.9.9.9`; a repeatable option takes several values
/// separated by commas or spaces; a flag takes `1`/`true`/`yes` (on) or `0`/`false`/`no` (off), and
/// any other value is an error. A flag given on the command line wins: the variable is ignored for
/// that option.
enum EnvironmentArguments {
    /// - Throws: `ValidationError` naming the variable when a flag's value is neither on nor off.
    static func merge(
        arguments: [String],
        environment: [String: String],
        options: [String],
        flags: [String]
    ) throws -> [String] {
        var merged = arguments
        for option in options {
            let variable = variableName(option)
            guard let value = environment[variable], !value.isEmpty,
                !arguments.contains(where: { $0 == "--\(option)" || $0.hasPrefix("--\(option)=") })
            else { continue }
            for part in value.split(whereSeparator: { $0 == "," || $0 == " " }) {
                merged += ["--\(option)", String(part)]
            }
        }
        for flag in flags {
            let variable = variableName(flag)
            guard let value = environment[variable]?.lowercased(), !value.isEmpty else { continue }
            guard ["1", "true", "yes", "0", "false", "no"].contains(value) else {
                throw ValidationError("\(variable): \(value) is not 1, true, yes (on) or 0, false, no (off)")
            }
            guard ["1", "true", "yes"].contains(value), !arguments.contains("--\(flag)") else { continue }
            merged.append("--\(flag)")
        }
        return merged
    }

    /// The long names of `command`'s options and flags, read from its own definition (the JSON that
    /// `--experimental-dump-help` prints), so that every option has its variable without a second list
    /// to keep in step. `--help` and `--version` have none.
    static func names(of command: any ParsableCommand.Type) -> (options: [String], flags: [String]) {
        struct Tool: Decodable { let command: Command }
        struct Command: Decodable { let arguments: [Argument]? }
        struct Argument: Decodable {
            let kind: String
            let names: [Name]?
        }
        struct Name: Decodable {
            let kind: String
            let name: String
        }
        guard let tool = try? JSONDecoder().decode(Tool.self, from: Data(command._dumpHelp().utf8)) else {
            return ([], [])
        }
        var options: [String] = []
        var flags: [String] = []
        for argument in tool.command.arguments ?? [] {
            guard let long = argument.names?.first(where: { $0.kind == "long" })?.name, long != "help",
                long != "version"
            else { continue }
            switch argument.kind {
            case "option": options.append(long)
            case "flag": flags.append(long)
            default: continue
            }
        }
        return (options, flags)
    }

    /// `rate-limit` → `DOTPROXY_RATE_LIMIT`.
    static func variableName(_ option: String) -> String {
        "DOTPROXY_" + String(option.uppercased().map { $0 == "-" ? "_" : $0 })
    }
}

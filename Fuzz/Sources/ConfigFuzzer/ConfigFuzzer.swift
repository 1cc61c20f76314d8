import ArgumentParser
import DoTCore

@testable import DotProxyServer

#if canImport(Glibc)
import Glibc
#endif

/// One libFuzzer input, read as a configuration file the way a start reads it: the YAML walk,
/// swift-configuration's values, the upstreams section, then the options the file stands for and
/// their checks.
///
/// Must hold: nothing crashes or hangs; a refused file says why with lines that exist in it and its
/// own path; a file that is read has each setting once, at a line of the file, and upstreams with
/// distinct names and addresses; a complaint about an option the file set is said of that setting
/// (the key whose option it names, not one whose option is a prefix of it, as `--redis` is of
/// `--redis-timeout`); and a file whose options pass their checks gives a configuration with exactly
/// the file's upstreams. Paths the file names are not opened here (a CA file of `/dev/zero` would
/// only test the kernel), only checked for existence, as the options do.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfigFile(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    let path = ConfigFuzzing.path
    guard let file = fopen(path, "w") else { preconditionFailure("cannot write \(path)") }
    precondition(fwrite(bytes.baseAddress, 1, size, file) == size)
    fclose(file)
    // The lines a problem may be on: the file's as YAML counts them, and one past its end for an
    // unterminated construct. YAML breaks lines at LF, CR (CR LF is one break: counting two is an
    // upper bound), NEL, LS and PS.
    let text = String(decoding: bytes, as: UTF8.self)
    let breaks = text.unicodeScalars.count { ["\n", "\r", "\u{85}", "\u{2028}", "\u{2029}"].contains($0) }
    let lineCount = breaks + 2
    ConfigFuzzing.check(path: path, lineCount: lineCount)
    return 0
}

enum ConfigFuzzing {
    static let path = "/tmp/dotproxy-config-fuzz-\(getpid()).yaml"

    static func check(path: String, lineCount: Int) {
        let file: ConfigFile
        do {
            file = try ConfigFile.load(path: path)
        } catch {
            checkRefusal(error, path: path, lineCount: lineCount)
            return
        }
        var keys = Set<String>()
        for value in file.values {
            precondition(keys.insert(value.setting.key).inserted, "\(value.setting.key) read twice")
            precondition((1...lineCount).contains(value.line), "\(value.setting.key) at line \(value.line)")
            precondition(ConfigFileSchema.byKey[value.setting.key] != nil)
        }
        precondition(Set(file.upstreams.map(\.name)).count == file.upstreams.count, "two upstreams share a name")
        precondition(Set(file.upstreams.map(\.argument)).count == file.upstreams.count, "an upstream listed twice")

        let arguments: [String]
        do {
            (arguments, _) = try DotProxyCommand.resolveArguments(
                commandLine: ["--config", path],
                environment: [:]
            )
        } catch {
            preconditionFailure("a file that loads did not load again: \(error)")
        }
        do {
            guard let command = try DotProxyCommand.parseAsRoot(arguments) as? DotProxyCommand else {
                preconditionFailure("the file's options chose a subcommand: \(arguments)")
            }
            var configuration = try command.makeConfiguration()
            file.applyUpstreamSettings(to: &configuration)
            precondition(configuration.upstreams.count == file.upstreams.count, "upstreams lost or added")
            for upstream in file.upstreams {
                precondition(configuration.upstreamSettings[upstream.argument]?.name == upstream.name)
            }
        } catch {
            let message = DotProxyCommand.message(for: error)
            precondition(!message.isEmpty, "an option was refused without a reason")
            guard let located = file.locate(message) else { return }
            checkRefusal(located, path: path, lineCount: lineCount)
            // "--name: …" is said of the setting whose option is that name, when the file set it.
            if message.hasPrefix("--"), let colon = message.firstIndex(of: ":"),
                let named = file.values.first(where: { "--\($0.setting.option)" == message[..<colon] })
            {
                precondition(
                    located.problems.first?.key == named.setting.key,
                    "\(message) said of \(located.problems.first?.key ?? "nothing"), not \(named.setting.key)"
                )
            }
        }
    }

    private static func checkRefusal(_ error: ConfigFileError, path: String, lineCount: Int) {
        precondition(!error.problems.isEmpty, "a file refused without a problem")
        for problem in error.problems {
            precondition(!problem.reason.isEmpty, "a problem without a reason")
            if let line = problem.line {
                precondition((1...lineCount).contains(line), "a problem at line \(line) of \(lineCount - 1)")
            }
            if let key = problem.key { precondition(!key.isEmpty, "a problem with an empty key") }
        }
        precondition(error.description.hasPrefix(path), "a problem not said of the file")
    }
}

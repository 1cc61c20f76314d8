import ArgumentParser
import DoTCore
import Logging

/// `dotproxy check-config PATH`: reads and checks a configuration file as a start would, and starts
/// nothing. Exits 0 when the file is usable, 78 (EX_CONFIG) with `file:line: key: reason` for each
/// problem otherwise, so a deploy or a systemd `ExecStartPre` can refuse a broken file.
///
/// The file is checked alone: flags and `DOTPROXY_*` variables do not apply, so a file that only works
/// with them fails here.
struct CheckConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Check a configuration file without starting anything (exit 0, or 78 with each problem)."
    )

    @Argument(help: "The configuration file.")
    var path: String

    func run() async throws {
        do throws(ConfigFileError) {
            let file = try ConfigFile.load(path: path)
            try Self.check(file)
            print("\(path): ok, \(file.values.count) settings, \(file.upstreams.count) upstreams")
        } catch {
            StandardError.write("\(error)\n")
            throw ExitCode(ConfigFileError.exitCode)
        }
    }

    /// Checks what the file sets as the options it stands for would be checked, and loads the trust
    /// roots each upstream would use and the TLS listener's certificate and key.
    static func check(_ file: ConfigFile) throws(ConfigFileError) {
        do {
            let command = try DotProxyCommand.parse(file.arguments { _ in false })
            var configuration = try command.makeConfiguration()
            file.applyUpstreamSettings(to: &configuration)
            _ = try TLSClientContext(configuration: configuration.tls)
            // The listener's pair as a start would load it: a key that is not the certificate's fails here.
            var logger = Logger(label: "dotproxy.check-config")
            logger.logLevel = .warning  // an expired or expiring certificate is worth saying
            _ = try configuration.tlsListener?.load(logger: logger)
            for upstream in file.upstreams {
                do {
                    _ = try TLSClientContext(configuration: upstream.tls(from: configuration.tls))
                } catch {
                    throw ConfigFileError(
                        path: file.path,
                        line: upstream.line,
                        key: "upstreams.\(upstream.name)",
                        "\(error)"
                    )
                }
            }
        } catch let error as ConfigFileError {
            throw error
        } catch {
            let message = DotProxyCommand.message(for: error)
            throw file.locate(message) ?? ConfigFileError(path: file.path, message)
        }
    }
}

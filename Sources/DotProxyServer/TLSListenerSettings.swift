import ArgumentParser
import DoTCore
import Foundation
import Logging

/// The TLS listener's certificate chain and key files, read at start and at every reload (a renewed
/// certificate usually keeps its file names).
struct TLSListenerSettings: Equatable, Sendable, CustomStringConvertible {
    var certificateChainFile: String
    var privateKeyFile: String

    var description: String { "cert=\(certificateChainFile) key=\(privateKeyFile)" }

    /// Reads and checks the pair, and logs when the certificate expires (a warning once it has, or
    /// within two weeks). Blocks: call it off the event loops.
    ///
    /// - Throws: `ValidationError` naming `--tls-cert` and GnuTLS's reason when the pair cannot be used.
    func load(logger: Logger) throws -> TLSServerContext {
        let context: TLSServerContext
        do {
            context = try TLSServerContext(certificateChainFile: certificateChainFile, privateKeyFile: privateKeyFile)
        } catch {
            throw ValidationError(
                "--tls-cert: cannot use \(certificateChainFile) with \(privateKeyFile): \(error.message)"
            )
        }
        let expiry = Date(timeIntervalSince1970: TimeInterval(context.certificateExpiry))
        let left = expiry.timeIntervalSinceNow
        let metadata: Logger.Metadata = [
            "certificate": "\(certificateChainFile)", "expires": "\(expiry.formatted(.iso8601))",
        ]
        if left <= 0 {
            logger.warning(
                "the TLS listener's certificate has expired: clients that verify it will refuse it",
                metadata: metadata
            )
        } else if left < 14 * 86_400 {
            logger.warning("the TLS listener's certificate expires within two weeks", metadata: metadata)
        } else {
            logger.info("TLS listener certificate loaded", metadata: metadata)
        }
        return context
    }
}

import DoTCore
import Foundation

/// Fixture certificates for TLS tests, written to a private temporary directory on first use and
/// removed at exit.
///
/// The CA and the valid server certificate never expire (9999-12-31). The server certificate names
/// `dns.test`, `127.0.0.1` and `::1`. Regenerate with `make-test-certificates.sh`.
public enum TestCertificates {
    /// A certificate and its private key, as PEM files.
    public struct Identity: Sendable {
        /// The PEM certificate file.
        public let certificateFile: String
        /// The PEM private key file.
        public let keyFile: String
    }

    /// The name every server certificate here is issued for (except ``wrongName``).
    public static let serverName = "dns.test"

    /// Removed when the process exits, so test runs leave nothing behind.
    private static let directory: String = {
        let path = FileManager.default.temporaryDirectory
            .appendingPathComponent("dotproxy-test-certificates-\(getpid())").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: TestCertificates.directory) }
        return path
    }()

    private static func write(_ name: String, _ contents: String) -> String {
        let path = directory + "/" + name
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: Data(contents.utf8))
        }
        return path
    }

    /// The test CA, in PEM.
    public static var caFile: String { write("ca.pem", caCertificatePEM) }
    /// A valid certificate for dns.test, 127.0.0.1 and ::1.
    public static var server: Identity { identity("server", serverCertificatePEM, serverKeyPEM) }
    /// A certificate for dns.test that expired in 2002.
    public static var expired: Identity { identity("expired", expiredCertificatePEM, expiredKeyPEM) }
    /// A valid certificate for other.test only.
    public static var wrongName: Identity { identity("wrongname", wrongnameCertificatePEM, wrongnameKeyPEM) }
    /// A certificate for dns.test from a CA that clients do not trust.
    public static var untrusted: Identity { identity("untrusted", untrustedCertificatePEM, untrustedKeyPEM) }
    /// A certificate for dns.test and 127.0.0.1 from the test CA whose Extended Key Usage allows
    /// client authentication only: not a server's certificate.
    public static var clientAuthenticationOnly: Identity {
        identity("clientauth", clientauthCertificatePEM, clientauthKeyPEM)
    }
    /// A certificate from the test CA that names dns.test only in its subject's common name, with no
    /// subjectAltName.
    public static var commonNameOnly: Identity { identity("cnonly", cnonlyCertificatePEM, cnonlyKeyPEM) }

    private static func identity(_ name: String, _ certificate: String, _ key: String) -> Identity {
        Identity(certificateFile: write("\(name).pem", certificate), keyFile: write("\(name).key", key))
    }

    /// A strict client configuration that trusts only the test CA.
    ///
    /// - Parameter pins: SPKI pins to require, in base64.
    public static func clientConfiguration(pins: [String] = []) -> TLSClientConfiguration {
        var configuration = TLSClientConfiguration.makeStrict()
        configuration.trustRoots = .pemFile(caFile)
        configuration.spkiPins = Set(pins.compactMap { SPKIPin(base64: $0) })
        return configuration
    }
}

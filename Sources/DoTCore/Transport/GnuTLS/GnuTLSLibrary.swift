internal import CGnuTLS

/// Facts about the GnuTLS library that dotproxy runs against.
public enum GnuTLSLibrary {
    /// The oldest GnuTLS release dotproxy supports: 3.7 brings the TLS 1.3 and verification APIs used here.
    public static let minimumVersion = "3.7.0"

    /// The version of the GnuTLS library loaded at run time, such as `3.7.9`.
    public static var version: String {
        guard let text = gnutls_check_version(nil) else { return "unknown" }
        return String(cString: text)
    }

    /// Checks that the loaded GnuTLS is at least `minimum`.
    ///
    /// Call it once at start-up; the DoT transport calls it before it builds its first context.
    ///
    /// - Parameter minimum: The oldest acceptable version; ``minimumVersion`` by default.
    /// - Throws: ``GnuTLSError`` naming the loaded and the required versions when the library is older.
    public static func checkVersion(minimum: String = minimumVersion) throws(GnuTLSError) {
        guard gnutls_check_version(minimum) != nil else {
            throw GnuTLSError(
                message: "GnuTLS \(version) is loaded, but dotproxy needs \(minimum) or newer "
                    + "(on Debian or Ubuntu: apt-get install libgnutls30)",
                operation: "version check"
            )
        }
    }
}

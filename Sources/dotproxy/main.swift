#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif
import DoTCore

// The server is composed in a later step (see the issue "The proxy server and the dotproxy command").
// Until then the command checks its GnuTLS and says plainly that it cannot serve yet.
do {
    try GnuTLSLibrary.checkVersion()
} catch {
    print("dotproxy: \(error)")
    exit(69)
}
print("dotproxy: DoTCore is built against GnuTLS \(GnuTLSLibrary.version); the server is not available in this build yet.")
exit(69)

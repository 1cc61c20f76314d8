import DoTCore
import Testing

@Suite struct GnuTLSLibraryTests {
    @Test func theLoadedLibraryIsSupported() throws {
        try GnuTLSLibrary.checkVersion()
        #expect(GnuTLSLibrary.version.hasPrefix("3."))
    }

    @Test func anOlderLibraryIsReportedClearly() {
        do {
            try GnuTLSLibrary.checkVersion(minimum: "99.0.0")
            Issue.record("version 99 was accepted")
        } catch {
            #expect(error.code == 0 && error.isFatal && error.operation == "version check")
            #expect(error.description.contains("99.0.0") && error.description.contains(GnuTLSLibrary.version))
        }
    }
}

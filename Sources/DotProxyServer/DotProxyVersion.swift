/// The version `dotproxy --version` prints. Pre-1.0: the command line and DoTCore's API may still
/// change between minor versions.
enum DotProxyVersion {
    static let current = "0.2.0"
}

/// The `dotproxy` command: what the executable runs.
///
/// The server lives in this library, not in the executable, so that the tests and the fuzz targets
/// reach the same code (the configuration file's reader, the option checks) that a start runs. Its
/// types are not an API for embedding; an application that embeds the proxy builds on DoTCore.
public enum DotProxyMain {
    /// Parses the command line, the `DOTPROXY_*` variables and the configuration file, then serves
    /// until a signal stops the server; a problem with the settings exits 64 (usage) or 78 (the file).
    public static func main() async {
        await DotProxyCommand.main()
    }
}

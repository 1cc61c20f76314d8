import DotProxyServer

/// The `dotproxy` executable: the server is the DotProxyServer library.
@main
enum DotProxyEntry {
    static func main() async {
        await DotProxyMain.main()
    }
}

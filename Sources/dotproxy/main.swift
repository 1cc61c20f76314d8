import DotProxyServer

await DotProxyMain.main()

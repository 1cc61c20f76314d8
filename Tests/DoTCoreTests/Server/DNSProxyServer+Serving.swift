import DoTCore
import Logging
import ServiceLifecycle
import Testing

extension DNSProxyServer {
    /// Runs the server in a service group while `body` runs, then shuts it down gracefully, also when
    /// `body` throws. `body` gets the first listening port and the group (to shut down early).
    func serving(_ body: (_ port: Int, _ services: ServiceGroup) async throws -> Void) async throws {
        let services = ServiceGroup(services: [self], logger: Logger(label: "test"))
        let running = Task { try await services.run() }
        do {
            try await body(try #require(try await listeningAddresses().first?.port), services)
        } catch {
            await services.triggerGracefulShutdown()
            _ = try? await running.value
            throw error
        }
        await services.triggerGracefulShutdown()
        try await running.value
    }
}

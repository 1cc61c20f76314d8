import Benchmark
import DoTCore
import NIOCore

/// A typical forwarded response: www.example.com A → CNAME plus two A records, with an EDNS OPT
/// record, 117 octets on the wire.
func typicalResponse() -> DNSMessage {
    var message = DNSMessage.query(name: "www.example.com.", type: .a, id: 0x1234)
    message.header.isResponse = true
    message.header.recursionAvailable = true
    message.answers = [
        DNSResourceRecord(name: "www.example.com.", ttl: 3600, rdata: .cname("web.example.com.")),
        DNSResourceRecord(name: "web.example.com.", ttl: 300, rdata: .a(IPv4Address(192, 0, 2, 10))),
        DNSResourceRecord(name: "web.example.com.", ttl: 300, rdata: .a(IPv4Address(192, 0, 2, 11))),
    ]
    message.authorities = [DNSResourceRecord(name: "example.com.", ttl: 86400, rdata: .ns("ns1.example.com."))]
    return message
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .throughput],
        warmupIterations: 1000,
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 1_000_000
    )
    let message = typicalResponse()
    let wire = try! message.encoded()

    Benchmark("Wire: view parse + ID rewrite + TTL ageing (\(wire.readableBytes) B)") { benchmark in
        var buffer = wire
        buffer.writeInteger(UInt8(0))  // Make the buffer this benchmark's own before measuring.
        buffer.moveWriterIndex(to: buffer.writerIndex - 1)
        benchmark.startMeasurement()
        for iteration in benchmark.scaledIterations {
            let view = try DNSMessageView(buffer)
            view.setID(UInt16(truncatingIfNeeded: iteration), in: &buffer)
            view.ageTTLs(by: 1, in: &buffer)
            blackHole(view)
        }
    }

    Benchmark("Wire: full decode (\(wire.readableBytes) B)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try DNSMessage(decoding: wire))
        }
    }

    Benchmark("Wire: encode with compression") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try message.encoded())
        }
    }
}

import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded

@testable import DoTCore

/// One libFuzzer input as an upstream's byte stream into a DoT connection's reply path: framing,
/// ID and question matching, replies out of order, short and oversized frames, and the close that
/// follows. The connection runs on an `EmbeddedChannel` standing for the TLS plaintext.
///
/// Input: octet 0 chooses how many queries are in flight (1-8), octet 1 a mode (bit 0: the stream
/// starts with valid replies to the queries, in order or, with bit 1, reversed; bits 2-6: the size
/// of each read; bit 7: the connection drains after 3 queries); the rest is the upstream's bytes.
///
/// Must hold: every query completes exactly once (a reply, or a failure at the close); a reply is
/// delivered only to the query whose ID and question it carries, with the client's ID restored, and
/// has QR set. A crash, a hang, an ASan report or a failed precondition is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzDoTReplies(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let count = Int(input[0] % 8) + 1
    let mode = input[1]
    let channel = EmbeddedChannel()
    let owner = FuzzOwner()
    let connection = DoTConnection(
        owner: owner,
        identifier: 1,
        maximumQueries: mode & 0x80 != 0 ? 3 : nil,
        idleTimeout: .seconds(10)
    )
    try! channel.pipeline.syncOperations.addHandler(connection)
    connection.connected()

    let outcomes = NIOLockedValueBox([[Result<ParsedDNSMessage, UpstreamError>]](repeating: [], count: count))
    let queries = Array(fuzzQueries.prefix(count))
    for (index, query) in queries.enumerated() {
        connection.enqueue(
            DoTQuery(query: query, paddingBlockSize: 128, deadline: .now() + .seconds(5)) { result in
                outcomes.withLockedValue { $0[index].append(result) }
            }
        )
    }
    channel.embeddedEventLoop.run()

    // What the connection wrote: one frame per query, under the connection's own IDs.
    var written = ByteBuffer()
    while var bytes = try? channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&bytes) }
    var frames: [ByteBuffer] = []
    while let frame = written.readLengthPrefixedSlice(as: UInt16.self) { frames.append(frame) }

    var stream = ByteBuffer()
    if mode & 1 != 0 {
        for frame in mode & 2 != 0 ? frames.reversed() : frames {
            var reply = frame
            let flags = reply.getInteger(at: reply.readerIndex + 2, as: UInt16.self) ?? 0
            reply.setInteger(flags | DNSHeader.Flag.qr, at: reply.readerIndex + 2)
            stream.writeInteger(UInt16(reply.readableBytes))
            stream.writeBuffer(&reply)
        }
    }
    stream.writeBytes(UnsafeBufferPointer(rebasing: input[2...]))
    let readSize = Int((mode >> 2) & 0x1F) * 7 + 1
    while stream.readableBytes > 0, channel.isActive {
        let chunk = stream.readSlice(length: min(readSize, stream.readableBytes))!
        do {
            try channel.writeInbound(chunk)
        } catch {
            break
        }
        channel.pipeline.fireChannelReadComplete()
    }
    channel.embeddedEventLoop.run()
    _ = try? channel.finish(acceptAlreadyClosed: true)
    channel.embeddedEventLoop.run()

    for (index, results) in outcomes.withLockedValue({ $0 }).enumerated() {
        precondition(results.count == 1, "query \(index) completed \(results.count) times")
        guard case .success(let reply) = results[0] else { continue }
        let query = queries[index]
        precondition(reply.view.isResponse, "a message without QR was delivered as a reply")
        precondition(reply.view.id == query.view.id, "the client's ID was not restored")
        precondition(reply.answersQuestion(of: query), "a reply was delivered to a query it does not answer")
    }
    return 0
}

/// The queries an input may have in flight, built once: q0.test A, q1.test AAAA, …
let fuzzQueries: [ParsedDNSMessage] = (0..<8).map { index in
    let types: [DNSRecordType] = [.a, .aaaa, .txt, .mx]
    let message = try! DNSMessage.query(
        name: try! DNSName(parsing: "q\(index).test."),
        type: types[index % types.count],
        id: UInt16(truncatingIfNeeded: index &* 7919)
    ).encoded()
    return try! ParsedDNSMessage(message)
}

/// The connection's owner, reduced to what a lone connection needs: a query it hands back after a
/// close fails (a real owner would retry it on another connection).
final class FuzzOwner: DoTConnectionOwner {
    let upstream = UpstreamAddress(host: "127.0.0.1", port: 853, authenticationName: "dns.test")
    let logger = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })

    func connection(_ connection: DoTConnection, reported event: DoTConnectionEvent) {}
    func connectionDidClose(_ connection: DoTConnection, error: UpstreamError) {}
    func resubmit(_ query: DoTQuery) {
        query.fail(UpstreamError(.connectionReset, upstream: "fuzz", detail: "closed"))
    }
    func storeResumptionData(_ data: [UInt8]) {}
    func upstreamError(for error: any Error) -> UpstreamError {
        UpstreamError(.connectionReset, upstream: "fuzz", detail: "\(error)")
    }
}

import CoreMetrics
import Logging
import NIOCore
import NIOEmbedded

@testable import DoTCore

/// One libFuzzer input through the whole query pipeline (access list, parsing, cache, coalescing,
/// the upstream, reply shaping), as a UDP datagram and as a client's TCP byte stream, in front of a
/// scripted upstream that answers every query it is given (NXDOMAIN, SERVFAIL, a large or a small
/// answer, or silence, by the first octet of the name).
///
/// Input: octet 0 chooses the path (bit 0: TCP, else UDP) and, for TCP, the size of each read (bits
/// 1-7); the rest is the datagram or the stream. Each input gets a fresh handler and cache, and is
/// sent twice, so that the second goes through the cache.
///
/// Must hold: every reply parses, has QR set, carries the query's ID, answers the query's question
/// when the query had one that parsed, and over UDP fits the client's size (at most 1,232 octets).
/// Over TCP there are never more replies than whole frames sent. A crash, a hang, an ASan report or
/// a failed precondition is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPipeline(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let payload = ByteBuffer(bytes: UnsafeBufferPointer(rebasing: input[1...]))
    let loop = EmbeddedEventLoop()
    let handler = ForwardingQueryHandler(
        transport: ScriptedUpstream(),
        cache: InMemoryDNSResponseCache(configuration: .init(maximumEntries: 64), shardCount: 1, metrics: quietMetrics),
        queryTimeout: .seconds(2),
        metrics: quietMetrics,
        logger: quietLogger
    )
    if input[0] & 1 == 0 {
        for _ in 0..<2 { checkUDP(payload, handler: handler, loop: loop) }
    } else {
        checkTCP(payload, readSize: Int(input[0] >> 1) + 1, handler: handler)
    }
    try? loop.syncShutdownGracefully()
    return 0
}

let client = try! SocketAddress(ipAddress: "127.0.0.1", port: 5300)
/// Built once: a metrics object makes a hundred handles, which dominated an input's time.
let quietMetrics = DNSProxyMetrics(factory: NOOPMetricsHandler.instance)
let quietLogger = Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() })

func checkUDP(_ datagram: ByteBuffer, handler: ForwardingQueryHandler, loop: EmbeddedEventLoop) {
    var reply: ByteBuffer?
    switch handler.respond(to: DNSClientQuery(message: datagram, client: client, clientProtocol: .udp), on: loop) {
    case .now(let now):
        reply = now
    case .later(let future):
        // The handler's deadlines run on the real clock: the scripted upstream never leaves a query
        // waiting, so the reply is there once the loop has run.
        var outcome: Result<ByteBuffer?, any Error>?
        future.whenComplete { outcome = $0 }
        loop.run()
        guard case .success(let later) = outcome else {
            precondition(outcome != nil, "a query still waits with nothing left to run")
            return
        }
        reply = later
    }
    guard let reply else { return }
    check(reply, answering: datagram)
    let query = try? DNSMessageView(datagram)
    let limit = max(512, min(query?.clientUDPPayloadSize ?? 512, ForwardingQueryHandler.defaultMaximumUDPReplySize))
    precondition(reply.readableBytes <= limit, "a UDP reply of \(reply.readableBytes) octets, over \(limit)")
}

func checkTCP(_ stream: ByteBuffer, readSize: Int, handler: ForwardingQueryHandler) {
    let channel = EmbeddedChannel()
    _ = try! DNSProxyServer.addClientTCPHandlers(
        to: channel.pipeline.syncOperations,
        handler: handler,
        configuration: .init()
    )
    try! channel.connect(to: client).wait()
    var frames = stream
    var sent: [ByteBuffer] = []
    while let frame = frames.readLengthPrefixedSlice(as: UInt16.self) { sent.append(frame) }
    var rest = stream
    while rest.readableBytes > 0, channel.isActive {
        let chunk = rest.readSlice(length: min(readSize, rest.readableBytes))!
        do {
            try channel.writeInbound(chunk)
        } catch {
            break
        }
        channel.pipeline.fireChannelReadComplete()
    }
    channel.embeddedEventLoop.run()
    var written = ByteBuffer()
    while var bytes = try? channel.readOutbound(as: ByteBuffer.self) { written.writeBuffer(&bytes) }
    var replies: [ByteBuffer] = []
    while let reply = written.readLengthPrefixedSlice(as: UInt16.self) { replies.append(reply) }
    precondition(written.readableBytes == 0, "a reply frame was cut short")
    precondition(replies.count <= sent.count, "\(replies.count) replies to \(sent.count) queries")
    for reply in replies {
        // Replies come as their queries complete, and a client may reuse an ID: one of the queries
        // with this ID must be the one it answers.
        let id = reply.getInteger(at: reply.readerIndex, as: UInt16.self)
        let candidates = sent.filter { $0.getInteger(at: $0.readerIndex, as: UInt16.self) == id }
        precondition(!candidates.isEmpty, "a reply with an ID no query had")
        precondition(candidates.contains { answers(reply, $0) }, "a reply that answers none of the queries with its ID")
    }
    _ = try? channel.finish(acceptAlreadyClosed: true)
}

/// A reply must parse, have QR set, carry the query's ID, and answer its question if it could be read.
func check(_ reply: ByteBuffer, answering query: ByteBuffer) {
    precondition(answers(reply, query), "a reply that does not parse, lacks QR, or answers another query")
}

func answers(_ reply: ByteBuffer, _ query: ByteBuffer) -> Bool {
    guard let view = try? DNSMessageView(reply), view.isResponse else { return false }
    if let id = query.getInteger(at: query.readerIndex, as: UInt16.self), view.id != id { return false }
    if let queryView = try? DNSMessageView(query), queryView.questionCount == 1, view.questionCount == 1,
        view.responseCode != .formatError
    {
        return view.questionMatches(queryView, in: reply, otherBuffer: query)
    }
    return true
}

/// Answers each query on its event loop: by the first octet of the first label, NXDOMAIN, SERVFAIL,
/// a large answer, a timeout, or a small answer.
struct ScriptedUpstream: UpstreamTransport {
    func send(
        _ query: ParsedDNSMessage,
        deadline: NIODeadline,
        on eventLoop: any EventLoop,
        completion: @escaping @Sendable (Result<ParsedDNSMessage, UpstreamError>) -> Void
    ) {
        let selector =
            query.view.questionNameRange.flatMap {
                query.buffer.getInteger(at: query.buffer.readerIndex + $0.lowerBound + 1, as: UInt8.self)
            } ?? 0
        if selector % 5 == 3 {
            eventLoop.execute { completion(.failure(UpstreamError(.timeout, upstream: "fuzz"))) }
            return
        }
        guard var message = try? DNSMessage(decoding: query.buffer) else {
            completion(.failure(UpstreamError(.malformedReply, upstream: "fuzz")))
            return
        }
        message.header.isResponse = true
        switch selector % 5 {
        case 0: message.header.responseCode = .nameError
        case 1: message.header.responseCode = .serverFailure
        case 2:
            if let question = message.questions.first {
                message.answers = (0..<40).map { index in
                    DNSResourceRecord(
                        name: question.name,
                        ttl: 300,
                        rdata: .txt([Array(repeating: UInt8(0x61 + index % 26), count: 60)])
                    )
                }
            }
        default:
            if let question = message.questions.first {
                message.answers = [
                    DNSResourceRecord(name: question.name, ttl: 60, rdata: .a(IPv4Address(192, 0, 2, 1)))
                ]
            }
        }
        guard let encoded = try? message.encoded(), let reply = try? ParsedDNSMessage(encoded) else {
            completion(.failure(UpstreamError(.malformedReply, upstream: "fuzz")))
            return
        }
        eventLoop.execute { completion(.success(reply)) }
    }
}

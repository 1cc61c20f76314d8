import DoTCore
import NIOCore
import Testing

/// Hand-made hostile packets. Each must fail with the right code, never crash and never hang.
@Suite("Malformed input is rejected with the right error")
struct MalformedInputTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let bytes: [UInt8]
        /// The code the full decoder must report.
        let code: DNSWireError.Code
        /// The code the view must report, or nil where only following pointers can find the problem.
        let viewCode: DNSWireError.Code?
        var testDescription: String { name }
    }

    static func header(
        id: UInt16 = 0x1234,
        flags: UInt16 = 0x0100,
        qd: UInt16 = 0,
        an: UInt16 = 0,
        ns: UInt16 = 0,
        ar: UInt16 = 0
    ) -> [UInt8] {
        [id, flags, qd, an, ns, ar].flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }

    /// Type, class, TTL and RDLENGTH of a record header.
    static func fixed(type: UInt16 = 1, class klass: UInt16 = 1, ttl: UInt32 = 60, rdLength: UInt16) -> [UInt8] {
        [
            UInt8(type >> 8), UInt8(type & 0xFF), UInt8(klass >> 8), UInt8(klass & 0xFF),
            UInt8(ttl >> 24), UInt8((ttl >> 16) & 0xFF), UInt8((ttl >> 8) & 0xFF), UInt8(ttl & 0xFF),
            UInt8(rdLength >> 8), UInt8(rdLength & 0xFF),
        ]
    }

    static let question: [UInt8] = [1, 0x61, 4, 0x74, 0x65, 0x73, 0x74, 0, 0, 1, 0, 1]  // a.test. A IN
    static let opt: [UInt8] = [0] + fixed(type: 41, class: 1232, ttl: 0, rdLength: 0)

    static var hopChain: [UInt8] {
        // Record 1 (at 12): root owner, opaque RDATA holding 200 pointers, each to the one before it.
        var bytes = header(an: 2) + [0] + fixed(type: 65280, rdLength: 400)
        var previous = 12
        for index in 0..<200 {
            let here = 12 + 11 + 2 * index
            bytes += [0xC0 | UInt8(previous >> 8), UInt8(previous & 0xFF)]
            previous = here
        }
        // Record 2: its owner points at the last pointer of the chain.
        bytes += [0xC0 | UInt8(previous >> 8), UInt8(previous & 0xFF)] + fixed(rdLength: 4) + [192, 0, 2, 1]
        return bytes
    }

    static let cases: [Case] = [
        Case(name: "empty buffer", bytes: [], code: .truncatedHeader, viewCode: .truncatedHeader),
        Case(
            name: "half a header",
            bytes: Array(header().prefix(7)),
            code: .truncatedHeader,
            viewCode: .truncatedHeader
        ),
        Case(
            name: "header only, counting a question",
            bytes: header(qd: 1),
            code: .countsExceedMessage,
            viewCode: .countsExceedMessage
        ),
        Case(
            name: "counts past the end",
            bytes: header(qd: 1, an: 5) + question + [0xC0, 12] + fixed(rdLength: 4) + [1, 2, 3, 4],
            code: .countsExceedMessage,
            viewCode: .countsExceedMessage
        ),
        Case(
            name: "self pointer in the question",
            bytes: header(qd: 1) + [0xC0, 12, 0, 1, 0, 1],
            code: .badCompressionPointer,
            viewCode: .badCompressionPointer
        ),
        Case(
            name: "self pointer in a record",
            bytes: header(an: 1) + [0xC0, 12] + fixed(rdLength: 4) + [1, 2, 3, 4],
            code: .badCompressionPointer,
            viewCode: .badCompressionPointer
        ),
        Case(
            name: "forward pointer",
            bytes: header(qd: 1, an: 1) + question + [0xC0, 40] + fixed(rdLength: 4) + [1, 2, 3, 4] + [
                0, 0, 0, 0, 0, 0, 0,
            ],
            code: .badCompressionPointer,
            viewCode: .badCompressionPointer
        ),
        // Record 1's name is "x" then a pointer to record 2's name; record 2's name points back to record 1.
        Case(
            name: "mutual pointers",
            bytes: header(an: 2) + [1, 0x78, 0xC0, 26] + fixed(rdLength: 0) + [0xC0, 12] + fixed(rdLength: 0),
            code: .badCompressionPointer,
            viewCode: .badCompressionPointer
        ),
        Case(
            name: "pointer past the end",
            bytes: header(qd: 1, an: 1) + question + [0xC3, 0xFF] + fixed(rdLength: 0),
            code: .badCompressionPointer,
            viewCode: .badCompressionPointer
        ),
        Case(
            name: "pointer cut in half",
            bytes: header(qd: 1, an: 1) + question + [0xC0],
            code: .unexpectedEnd,
            viewCode: .unexpectedEnd
        ),
        Case(
            name: "label of 64 octets",
            bytes: header(qd: 1) + [64] + Array(repeating: 0x61, count: 64) + [0, 0, 1, 0, 1],
            code: .reservedLabelType,
            viewCode: .reservedLabelType
        ),
        Case(
            name: "label type 0x80",
            bytes: header(qd: 1) + [0x81, 0x61, 0, 0, 1, 0, 1],
            code: .reservedLabelType,
            viewCode: .reservedLabelType
        ),
        Case(
            name: "name of 256 octets",
            bytes: header(qd: 1)
                + Array(repeating: [63] + Array(repeating: UInt8(0x62), count: 63), count: 4).flatMap { $0 } + [
                    0, 0, 1, 0, 1,
                ],
            code: .nameTooLong,
            viewCode: .nameTooLong
        ),
        Case(
            name: "label runs past the end",
            bytes: header(qd: 1) + [10, 0x61, 0x62],
            code: .unexpectedEnd,
            viewCode: .unexpectedEnd
        ),
        Case(
            name: "RDLENGTH past the end",
            bytes: header(qd: 1, an: 1) + question + [0xC0, 12] + fixed(rdLength: 200) + [1, 2, 3, 4],
            code: .rdataOverrun,
            viewCode: .rdataOverrun
        ),
        Case(
            name: "A record with RDLENGTH 5",
            bytes: header(qd: 1, an: 1) + question + [0xC0, 12] + fixed(rdLength: 5) + [1, 2, 3, 4, 5],
            code: .rdataLengthMismatch,
            viewCode: nil
        ),
        Case(
            name: "A record with RDLENGTH 3",
            bytes: header(qd: 1, an: 1) + question + [0xC0, 12] + fixed(rdLength: 3) + [1, 2, 3],
            code: .rdataLengthMismatch,
            viewCode: nil
        ),
        Case(
            name: "MX name running out of its RDATA",
            bytes: header(qd: 1, an: 1) + question + [0xC0, 12] + fixed(type: 15, rdLength: 4) + [0, 10, 3, 0x61] + [
                0x62, 0x63, 0,
            ],
            code: .rdataLengthMismatch,
            viewCode: .trailingBytes
        ),
        Case(
            name: "two OPT records",
            bytes: header(qd: 1, ar: 2) + question + opt + opt,
            code: .multipleOPT,
            viewCode: .multipleOPT
        ),
        Case(
            name: "OPT in the answer section",
            bytes: header(qd: 1, an: 1) + question + opt,
            code: .invalidOPT,
            viewCode: .invalidOPT
        ),
        Case(
            name: "OPT owned by a non-root name",
            bytes: header(qd: 1, ar: 1) + question + [0xC0, 12] + fixed(type: 41, class: 1232, ttl: 0, rdLength: 0),
            code: .invalidOPT,
            viewCode: .invalidOPT
        ),
        Case(
            name: "malformed cookie option",
            bytes: header(qd: 1, ar: 1) + question + [0] + fixed(type: 41, class: 1232, ttl: 0, rdLength: 7) + [
                0, 10, 0, 3, 1, 2, 3,
            ],
            code: .invalidOption,
            viewCode: nil
        ),
        Case(
            name: "trailing bytes",
            bytes: header(qd: 1) + question + [0xFF],
            code: .trailingBytes,
            viewCode: .trailingBytes
        ),
        Case(
            name: "CAA with an empty tag",
            bytes: header(qd: 1, an: 1) + question + [0xC0, 12] + fixed(type: 257, rdLength: 3) + [0, 0, 0x61],
            code: .invalidRData,
            viewCode: nil
        ),
        Case(name: "pointer chain of 200 hops", bytes: hopChain, code: .compressionHopLimit, viewCode: nil),
    ]

    @Test("the decoder reports the right code", arguments: cases)
    func decoderRejects(_ testCase: Case) {
        #expect(throws: DNSWireError.self) { try DNSMessage(decoding: ByteBuffer(bytes: testCase.bytes)) }
        do {
            _ = try DNSMessage(decoding: ByteBuffer(bytes: testCase.bytes))
        } catch {
            #expect(error.code == testCase.code, "\(error)")
            #expect(error.offset != nil)
            #expect(error.offset ?? .max <= testCase.bytes.count)
        }
    }

    @Test("the view reports the right code", arguments: cases)
    func viewRejects(_ testCase: Case) {
        do {
            _ = try DNSMessageView(ByteBuffer(bytes: testCase.bytes))
            #expect(testCase.viewCode == nil, "the view accepted \(testCase.name)")
        } catch {
            #expect(error.code == testCase.viewCode, "\(error)")
        }
    }

    @Test func headerOnlyWithNoCountsIsAnEmptyMessage() throws {
        let message = try DNSMessage(decoding: ByteBuffer(bytes: Self.header()))
        #expect(message.questions.isEmpty && message.edns == nil && message.header.id == 0x1234)
        let view = try DNSMessageView(ByteBuffer(bytes: Self.header()))
        #expect(view.questionNameRange == nil && view.questionType == nil)
    }

    /// A libFuzzer finding from the first fuzz runs: a bare header claiming 12,288 additional records.
    @Test func aHeaderClaimingThousandsOfRecordsIsRejectedWithoutCrashing() {
        let bytes = ByteBuffer(bytes: [0x01, 0x02, 0x03, 0x00, 0, 0, 0, 0, 0, 0, 0x30, 0x00])
        #expect(throws: DNSWireError.self) { try DNSMessage(decoding: bytes) }
        #expect(throws: DNSWireError.self) { try DNSMessageView(bytes) }
    }

    @Test func errorsDescribeThemselves() {
        let error = DNSWireError(.badCompressionPointer, offset: 12, detail: "pointer to 12")
        #expect(error.description == "DNSWireError.badCompressionPointer at offset 12: pointer to 12")
        #expect(DNSWireError(.truncatedHeader).description == "DNSWireError.truncatedHeader")
    }

    /// Mutates real packets with a fixed seed: every result is a clean error or a message that
    /// re-encodes to an equal message. Runs in well under a second; the libFuzzer target goes further.
    @Test func seededMutationsNeverCrash() throws {
        var generator = SplitMix64(seed: 0x5EED)
        var accepted = 0
        for file in Fixtures.allFiles {
            let original = try Fixtures.bytes(file)
            for _ in 0..<400 {
                var bytes = original
                for _ in 0..<Int.random(in: 1...4, using: &generator) {
                    switch Int.random(in: 0..<3, using: &generator) {
                    case 0:
                        bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(
                            in: 0...255,
                            using: &generator
                        )
                    case 1: bytes.removeLast(Int.random(in: 0..<min(8, bytes.count), using: &generator))
                    default:
                        bytes.insert(
                            UInt8.random(in: 0...255, using: &generator),
                            at: Int.random(in: 0...bytes.count, using: &generator)
                        )
                    }
                    if bytes.isEmpty { break }
                }
                let buffer = ByteBuffer(bytes: bytes)
                _ = try? DNSMessageView(buffer)
                if let message = try? DNSMessage(decoding: buffer) {
                    accepted += 1
                    #expect(try DNSMessage(decoding: message.encoded()) == message)
                    #expect(try DNSMessageView(message.encoded()).length > 0)
                }
            }
        }
        #expect(accepted > 0)
    }
}

/// A small deterministic generator, so that a failing mutation can be reproduced.
struct SplitMix64: RandomNumberGenerator, Sendable {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

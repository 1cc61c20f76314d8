import NIOCore

extension DNSRData {
    /// Decodes RDATA of `type`; the reader's limit is already set to the end of the RDATA.
    static func decode(type: DNSRecordType, from reader: inout DNSWireReader) throws(DNSWireError) -> DNSRData {
        let start = reader.offset
        switch type {
        case .a:
            return .a(IPv4Address(rawValue: try reader.readUInt32()))
        case .aaaa:
            let high = UInt64(try reader.readUInt32()) << 32 | UInt64(try reader.readUInt32())
            let low = UInt64(try reader.readUInt32()) << 32 | UInt64(try reader.readUInt32())
            return .aaaa(IPv6Address(high: high, low: low))
        case .ns:
            return .ns(try reader.readName())
        case .cname:
            return .cname(try reader.readName())
        case .ptr:
            return .ptr(try reader.readName())
        case .mx:
            return .mx(preference: try reader.readUInt16(), exchange: try reader.readName())
        case .txt:
            var strings: [[UInt8]] = []
            while !reader.isAtEnd {
                let length = try reader.readUInt8()
                strings.append(try reader.readBytes(Int(length)))
            }
            return .txt(strings)
        case .soa:
            return .soa(
                SOA(
                    primaryNameServer: try reader.readName(),
                    responsibleMailbox: try reader.readName(),
                    serial: try reader.readUInt32(),
                    refresh: try reader.readUInt32(),
                    retry: try reader.readUInt32(),
                    expire: try reader.readUInt32(),
                    minimum: try reader.readUInt32()
                )
            )
        case .srv:
            return .srv(
                SRV(
                    priority: try reader.readUInt16(),
                    weight: try reader.readUInt16(),
                    port: try reader.readUInt16(),
                    target: try reader.readName()
                )
            )
        case .caa:
            let flags = try reader.readUInt8()
            let tagLength = try reader.readUInt8()
            let tag = try reader.readBytes(Int(tagLength))
            guard (1...15).contains(tag.count),
                tag.allSatisfy({
                    (0x30...0x39).contains($0) || (0x41...0x5A).contains($0) || (0x61...0x7A).contains($0)
                })
            else {
                throw DNSWireError(.invalidRData, offset: start, detail: "CAA tag must be 1-15 letters or digits")
            }
            let value = try reader.readBytes(reader.limit - reader.position)
            return .caa(CAA(flags: flags, tag: String(decoding: tag, as: UTF8.self), value: value))
        case .svcb, .https:
            let priority = try reader.readUInt16()
            let target = try reader.readName()
            var parameters: [ServiceBinding.Parameter] = []
            while !reader.isAtEnd {
                let keyOffset = reader.offset
                let key = try reader.readUInt16()
                let length = try reader.readUInt16()
                if let previous = parameters.last, previous.key >= key {
                    throw DNSWireError(.invalidRData, offset: keyOffset, detail: "SvcParamKeys must increase")
                }
                parameters.append(.init(key: key, value: try reader.readBytes(Int(length))))
            }
            let binding = ServiceBinding(priority: priority, target: target, parameters: parameters)
            return type == .svcb ? .svcb(binding) : .https(binding)
        default:
            return .opaque(try reader.readBytes(reader.limit - reader.position))
        }
    }

    /// Writes the RDATA, compressing names only where `type` allows it.
    func encode(type: DNSRecordType, into writer: inout DNSWireWriter) throws(DNSWireError) {
        let compress = type.allowsRDataCompression
        switch self {
        case .a(let address):
            writer.buffer.writeInteger(address.rawValue)
        case .aaaa(let address):
            writer.buffer.writeInteger(address.high)
            writer.buffer.writeInteger(address.low)
        case .ns(let name), .cname(let name), .ptr(let name):
            writer.writeName(name, compress: compress)
        case .mx(let preference, let exchange):
            writer.buffer.writeInteger(preference)
            writer.writeName(exchange, compress: compress)
        case .txt(let strings):
            for string in strings {
                guard string.count <= 255 else {
                    throw DNSWireError(.invalidRData, offset: writer.offset, detail: "TXT string over 255 octets")
                }
                writer.buffer.writeInteger(UInt8(string.count))
                writer.buffer.writeBytes(string)
            }
        case .soa(let soa):
            writer.writeName(soa.primaryNameServer, compress: compress)
            writer.writeName(soa.responsibleMailbox, compress: compress)
            for value in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] {
                writer.buffer.writeInteger(value)
            }
        case .srv(let srv):
            writer.buffer.writeInteger(srv.priority)
            writer.buffer.writeInteger(srv.weight)
            writer.buffer.writeInteger(srv.port)
            writer.writeName(srv.target, compress: false)
        case .caa(let caa):
            let tag = Array(caa.tag.utf8)
            guard (1...15).contains(tag.count) else {
                throw DNSWireError(.invalidRData, offset: writer.offset, detail: "CAA tag must be 1-15 octets")
            }
            writer.buffer.writeInteger(caa.flags)
            writer.buffer.writeInteger(UInt8(tag.count))
            writer.buffer.writeBytes(tag)
            writer.buffer.writeBytes(caa.value)
        case .svcb(let binding), .https(let binding):
            writer.buffer.writeInteger(binding.priority)
            writer.writeName(binding.target, compress: false)
            for parameter in binding.parameters {
                guard parameter.value.count <= Int(UInt16.max) else {
                    throw DNSWireError(.invalidRData, offset: writer.offset, detail: "SvcParam value too long")
                }
                writer.buffer.writeInteger(parameter.key)
                writer.buffer.writeInteger(UInt16(parameter.value.count))
                writer.buffer.writeBytes(parameter.value)
            }
        case .opaque(let bytes):
            writer.buffer.writeBytes(bytes)
        }
    }
}

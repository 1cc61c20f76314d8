import DoTCore
import NIOCore

/// The cache's requirements called with plain buffers, parsed and keyed here, as the query path does
/// once per query.
extension DNSResponseCache {
    func lookup(_ query: ByteBuffer, now: NIODeadline) -> ByteBuffer? {
        let parsed = try! ParsedDNSMessage(query)
        return lookup(parsed, key: DNSCacheKey(parsed)!, now: now)
    }

    func lookupStale(_ query: ByteBuffer, now: NIODeadline) -> ByteBuffer? {
        let parsed = try! ParsedDNSMessage(query)
        return lookupStale(parsed, key: DNSCacheKey(parsed)!, now: now)
    }

    func store(_ reply: ByteBuffer, for query: ByteBuffer, now: NIODeadline) {
        store(try! ParsedDNSMessage(reply), key: DNSCacheKey(try! ParsedDNSMessage(query))!, now: now)
    }

    func claimPrefetch(_ query: ByteBuffer, now: NIODeadline) -> Bool {
        claimPrefetch(key: DNSCacheKey(try! ParsedDNSMessage(query))!, now: now)
    }
}

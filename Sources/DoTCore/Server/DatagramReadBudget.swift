/// How many vector reads (`recvmmsg`, ``datagramsPerRead`` datagrams each) a UDP listener makes each
/// time its socket wakes the event loop: NIO's `maxMessagesPerRead`.
///
/// NIO stops reading a TCP socket once a read comes back short, but reads a UDP socket until it is
/// empty or `maxMessagesPerRead` reads are done, so at light load every wake-up ends in one more
/// `recvmmsg` that finds nothing, and the replies of the wake-up wait for it. This budget gives that
/// stop to UDP: one read per wake-up while reads come back short, ``readsUnderLoad`` from the first
/// read that comes back full (more datagrams are likely queued behind it, and the replies of a long
/// wake-up leave together). It returns to one read after ``quietWakeUpsBeforeSingleRead`` wake-ups in
/// a row with no full read, so that a load near the threshold does not make NIO drop and reallocate
/// its receive buffers (it keeps one per read) at every wake-up.
struct DatagramReadBudget {
    /// Datagrams one vector read takes at most: NIO's `datagramVectorReadMessageCount`.
    let datagramsPerRead: Int
    /// Reads per wake-up while the socket keeps reads full.
    let readsUnderLoad: UInt
    /// Wake-ups in a row without a full read before the listener goes back to one read per wake-up.
    static let quietWakeUpsBeforeSingleRead = 32
    /// Reads per wake-up while reads come back short, and at the start: what a listener is bound with.
    static let singleRead: UInt = 1

    /// The reads per wake-up in force: what `maxMessagesPerRead` is set to.
    private(set) var readsPerWakeUp = singleRead
    private var datagramsThisWakeUp = 0
    private var quietWakeUps = 0

    init(datagramsPerRead: Int, readsUnderLoad: UInt) {
        precondition(datagramsPerRead > 0 && readsUnderLoad > 0)
        self.datagramsPerRead = datagramsPerRead
        self.readsUnderLoad = readsUnderLoad
    }

    /// Counts one datagram of the current wake-up.
    mutating func datagramRead() {
        datagramsThisWakeUp += 1
    }

    /// Ends a wake-up; returns the reads per wake-up to set if they change.
    mutating func wakeUpEnded() -> UInt? {
        defer { datagramsThisWakeUp = 0 }
        // A full read's worth of datagrams in one wake-up: a load that fills reads.
        if datagramsThisWakeUp >= datagramsPerRead {
            quietWakeUps = 0
            guard readsPerWakeUp != readsUnderLoad else { return nil }
            readsPerWakeUp = readsUnderLoad
            return readsPerWakeUp
        }
        guard readsPerWakeUp != Self.singleRead else { return nil }
        quietWakeUps += 1
        guard quietWakeUps >= Self.quietWakeUpsBeforeSingleRead else { return nil }
        quietWakeUps = 0
        readsPerWakeUp = Self.singleRead
        return readsPerWakeUp
    }
}

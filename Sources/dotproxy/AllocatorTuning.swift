#if canImport(Glibc)
import Glibc
#endif

/// glibc's allocator, tuned for the proxy's allocation pattern before anything else runs.
///
/// Each event loop allocates many small objects of a few sizes for the queries in flight (promises,
/// buffers, query state) and frees them in batches as replies arrive. glibc keeps only 7 freed chunks
/// of each size in a thread's cache; the rest go to shared bins that are consolidated, and the next
/// allocations take the slow path (`_int_malloc` was 7% of the CPU of a cache miss under load). With
/// 1,024 chunks per size a loop's working set stays in its cache: about 15% fewer user cycles per
/// miss and per hit (Docs/performance.md). The chunks kept are ones the proxy just used, so memory stays bounded
/// by the configured limits.
///
/// glibc reads the setting only at start-up, from `GLIBC_TUNABLES`, so the process re-executes itself
/// once with it set. An operator's own `GLIBC_TUNABLES`, even empty, is left as it is.
enum AllocatorTuning {
    static let variable = "GLIBC_TUNABLES"
    static let tunables = "glibc.malloc.tcache_count=1024"

    /// The value to start again with, or `nil` to run as is: when the variable is already set
    /// (by the operator, or by our own first start).
    static func tunablesToApply(existing: String?) -> String? {
        existing == nil ? tunables : nil
    }

    /// Re-executes this binary with the tunables set, unless they need no setting. Returns only when
    /// the process runs on as it is (also when `/proc/self/exe` cannot be executed).
    static func reexecuteIfNeeded() {
        #if os(Linux) && canImport(Glibc)
        guard let value = tunablesToApply(existing: getenv(variable).map { String(cString: $0) }),
            setenv(variable, value, 1) == 0
        else { return }
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // Still here: run untuned, and do not pretend to children that the tuning is in effect.
        unsetenv(variable)
        #endif
    }
}

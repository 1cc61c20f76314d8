/// Everything wrong with a configuration file, one problem per line of the message, each as
/// `file:line: key: reason` (the line and key when there is one), as compilers and `nginx -t` print
/// them. dotproxy exits 78 (EX_CONFIG) with it at start, and keeps its running configuration with it
/// at reload.
struct ConfigFileError: Error, CustomStringConvertible, Sendable {
    /// One problem.
    struct Problem: Error, Sendable, Equatable {
        /// The line it is on, from 1; `nil` for a problem with the whole file.
        var line: Int?
        /// The key it concerns (`cache.size`, `upstreams.quad9.address`), if any.
        var key: String?
        var reason: String
    }

    let path: String
    var problems: [Problem]

    init(path: String, problems: [Problem]) {
        self.path = path
        self.problems = problems
    }

    init(path: String, line: Int? = nil, key: String? = nil, _ reason: String) {
        self.init(path: path, problems: [Problem(line: line, key: key, reason: reason)])
    }

    var description: String {
        problems.map { problem in
            var text = path
            if let line = problem.line { text += ":\(line)" }
            text += ": "
            if let key = problem.key { text += "\(key): " }
            return text + problem.reason
        }.joined(separator: "\n")
    }

    /// The exit status for a configuration that cannot be used (sysexits.h's EX_CONFIG).
    static let exitCode: Int32 = 78
}

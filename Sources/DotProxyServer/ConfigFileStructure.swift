import Yams

/// Walks a configuration file's YAML tree before any value is read: every key must be a setting, in
/// its section, given once, with a value of the right shape; each problem keeps its line.
struct StructureWalker {
    /// A setting present in the file.
    struct Found {
        let setting: ConfigFileSchema.Setting
        let line: Int
        /// Whether the value is a sequence (a list key may also hold one scalar).
        let isSequence: Bool
    }

    /// An upstream present in the file, with the line of each of its keys.
    struct FoundUpstream {
        let name: String
        let line: Int
        var lines: [String: Int] = [:]
        var sequences: Set<String> = []
    }

    let path: String
    private(set) var problems: [ConfigFileError.Problem] = []
    private(set) var found: [Found] = []
    private(set) var upstreams: [FoundUpstream] = []
    private(set) var upstreamsLine: Int?

    init(path: String) {
        self.path = path
    }

    mutating func walk(_ root: Node) {
        guard let mapping = root.mapping else {
            problems.append(.init(line: root.mark?.line, key: nil, reason: "must be a mapping of settings, key: value"))
            return
        }
        // A key with no value (`metrics:` with its settings commented out) is a key not set.
        for (key, value, line) in entries(of: mapping, in: nil) where !Self.isNull(value) {
            if key == ConfigFileSchema.upstreamsKey {
                upstreamsLine = line
                walkUpstreams(value, line: line)
            } else if let setting = ConfigFileSchema.byKey[key] {
                check(value, as: setting, line: line)
            } else if ConfigFileSchema.sections.contains(key) {
                guard let section = value.mapping else {
                    problems.append(.init(line: line, key: key, reason: "must be a section of settings, key: value"))
                    continue
                }
                for (name, child, childLine) in entries(of: section, in: key) where !Self.isNull(child) {
                    let full = "\(key).\(name)"
                    guard let setting = ConfigFileSchema.byKey[full] else {
                        problems.append(.init(line: childLine, key: full, reason: unknown(full)))
                        continue
                    }
                    check(child, as: setting, line: childLine)
                }
            } else {
                problems.append(.init(line: line, key: key, reason: unknown(key)))
            }
        }
    }

    /// The text keys of `mapping`, with their values and lines; a key that is not text, or is empty,
    /// is a problem.
    /// (Yams refuses a key given twice before the walk.)
    private mutating func entries(of mapping: Node.Mapping, in parent: String?) -> [(String, Node, Int)] {
        var result: [(String, Node, Int)] = []
        for (keyNode, value) in mapping {
            let line = keyNode.mark?.line ?? 0
            guard let key = keyNode.scalar?.string else {
                problems.append(.init(line: line, key: parent, reason: "a key must be text"))
                continue
            }
            guard !key.isEmpty else {
                problems.append(.init(line: line, key: parent, reason: "a key is empty"))
                continue
            }
            result.append((key, value, line))
        }
        return result
    }

    private mutating func check(_ value: Node, as setting: ConfigFileSchema.Setting, line: Int) {
        switch (setting.kind, value) {
        case (.list, .sequence(let sequence)) where sequence.allSatisfy({ $0.scalar != nil }):
            found.append(Found(setting: setting, line: line, isSequence: true))
        case (_, .scalar):
            found.append(Found(setting: setting, line: line, isSequence: false))
        default:
            problems.append(.init(line: line, key: setting.key, reason: setting.kind.expected))
        }
    }

    private mutating func walkUpstreams(_ value: Node, line: Int) {
        guard let mapping = value.mapping, !mapping.isEmpty else {
            problems.append(
                .init(
                    line: line,
                    key: ConfigFileSchema.upstreamsKey,
                    reason: "must map a name to each upstream's settings, for example quad9: {address: 9.9.9.9}"
                )
            )
            return
        }
        for (name, settings, nameLine) in entries(of: mapping, in: ConfigFileSchema.upstreamsKey) {
            let key = "upstreams.\(name)"
            // The name becomes a configuration key and a metric label: no dots, nothing exotic.
            guard !name.isEmpty, name.count <= 64,
                name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") })
            else {
                problems.append(.init(line: nameLine, key: key, reason: "a name is letters, digits, - and _"))
                continue
            }
            guard let fields = settings.mapping else {
                problems.append(.init(line: nameLine, key: key, reason: "must be a section: address, auth-name, …"))
                continue
            }
            var upstream = FoundUpstream(name: name, line: nameLine)
            for (field, value, fieldLine) in entries(of: fields, in: key) {
                guard ConfigFileSchema.upstreamKeys.contains(field) else {
                    problems.append(
                        .init(
                            line: fieldLine,
                            key: "\(key).\(field)",
                            reason:
                                "unknown key (an upstream has \(ConfigFileSchema.upstreamKeys.joined(separator: ", ")))"
                        )
                    )
                    continue
                }
                switch value {
                case .scalar: break
                case .sequence(let items) where field == "pin-sha256" && items.allSatisfy({ $0.scalar != nil }):
                    upstream.sequences.insert(field)
                default:
                    problems.append(.init(line: fieldLine, key: "\(key).\(field)", reason: "must be a single value"))
                    continue
                }
                upstream.lines[field] = fieldLine
            }
            upstreams.append(upstream)
        }
    }

    /// Whether `node` is YAML's null: nothing, `~` or `null`.
    static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// "unknown key", with the nearest known key when one is close (a typo).
    private func unknown(_ key: String) -> String {
        let known = ConfigFileSchema.settings.map(\.key) + [ConfigFileSchema.upstreamsKey]
        let nearest = known.min { distance($0, key) < distance($1, key) }
        guard let nearest, distance(nearest, key) <= 3 else { return "unknown key" }
        return "unknown key (did you mean \(nearest)?)"
    }

    /// The edit distance between two keys.
    private func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        // One row of the edit-distance table at a time: row[j] is the distance from a[..<i] to b[..<j].
        var row = Array(0...b.count)
        for (i, character) in a.enumerated() {
            var diagonal = row[0]
            row[0] = i + 1
            for j in b.indices {
                let above = row[j + 1]
                row[j + 1] = min(above + 1, row[j] + 1, diagonal + (character == b[j] ? 0 : 1))
                diagonal = above
            }
        }
        return row[b.count]
    }
}

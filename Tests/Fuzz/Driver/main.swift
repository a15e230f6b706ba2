// drplan-fuzz TARGET [CORPUS_DIR…] [-max_total_time=SECONDS] [libFuzzer flags…]
//
// Fuzz targets for what drplan reads from other people: the YAML loader, the CEL parser and
// evaluator, the cron parser, RE2 patterns, the snapshot and index codecs, compressed frames
// and the policy loader. Each input must end in a result or a clean error: a crash, a
// sanitizer report or a hang (libFuzzer's -timeout) is a finding.
//
// Built by scripts/fuzz.sh with libFuzzer and AddressSanitizer, it is a coverage-guided
// fuzzer. Built ordinarily (as `swift build` and CI do), libFuzzer is absent and it replays
// every input of the corpus directories, then mutates them at random until the time is up:
// CI's short run, and the regression check for the crashers under Tests/Fuzz/crashers/.
import CEL
import CFuzzShim
import DRInventory
import DRPolicy
import DRRuns
import Foundation

let targets: [String: ([UInt8]) -> Void] = [
    "yaml": { bytes in
        _ = try? InventoryLoader.load(texts: [("fuzz.yaml", String(decoding: bytes, as: UTF8.self))])
        // The bundle's redacted copy: never a crash, and redacting a redacted copy changes nothing.
        if case .redacted(let once, _) = SourceRedaction.redact(bytes), case .redacted(let twice, _) = SourceRedaction.redact(Array(once.utf8)) {
            precondition(once == twice, "redaction is not idempotent")
        }
    },
    "cel": { bytes in
        let text = String(decoding: bytes, as: UTF8.self)
        guard let p = try? Program(text) else { return }
        var checker = TypeChecker(Declarations(variables: ["x": .dyn, "s": .string, "n": .int]))
        _ = checker.check(p.root)
        _ = try? p.evaluate(["x": .list([.int(1), .string("a"), .map(OrderedMap([("k", .int(2))]))]), "s": .string("aaaa!"), "n": .int(3)],
                            limits: EvalLimits(steps: 100_000, bytes: 8 << 20))
    },
    "cron": { bytes in
        _ = try? Schedule.parse(String(decoding: bytes, as: UTF8.self))
    },
    "regex": { bytes in
        // The first line is the pattern, the rest the input.
        let text = String(decoding: bytes, as: UTF8.self)
        let parts = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
        guard let re = try? RE2Regex(String(parts[0])) else { return }
        _ = re.matches(parts.count > 1 ? String(parts[1]) : "")
    },
    "snapshot": { bytes in _ = RepositoryDecoders.snapshotEntries(bytes) },
    "index": { bytes in _ = RepositoryDecoders.index(bytes) },
    "frame": { bytes in _ = RepositoryDecoders.frame(bytes) },
    "policy": { bytes in
        _ = try? PolicyLoader.load(texts: [("fuzz.yaml", String(decoding: bytes, as: UTF8.self))])
    },
]

let args = CommandLine.arguments
// `drplan-fuzz seed DIR`: writes the binary seeds (valid snapshot entries, index files and
// frames) under DIR/TARGET/.
if args.count == 3, args[1] == "seed" {
    for (name, items) in RepositoryDecoders.samples() {
        try FileManager.default.createDirectory(atPath: args[2] + "/" + name, withIntermediateDirectories: true)
        for (i, bytes) in items.enumerated() { try Data(bytes).write(to: URL(fileURLWithPath: "\(args[2])/\(name)/seed-\(i)")) }
    }
    exit(0)
}
guard args.count >= 2, let target = targets[args[1]] else {
    FileHandle.standardError.write(Data("usage: drplan-fuzz TARGET [CORPUS_DIR…] [-max_total_time=N] — targets: \(targets.keys.sorted().joined(separator: " "))\n".utf8))
    exit(2)
}
nonisolated(unsafe) var selected = target

if drplan_fuzz_available() != 0 {
    // libFuzzer parses argv itself: drop the target name.
    var rest = [args[0]] + args.dropFirst(2)
    var argc = Int32(rest.count)
    var cargs: [UnsafeMutablePointer<CChar>?] = rest.map { strdup($0) } + [nil]
    rest.removeAll()
    let status = cargs.withUnsafeMutableBufferPointer { buf -> Int32 in
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = buf.baseAddress
        return drplan_fuzz_run(&argc, &argv) { data, count in
            selected(Array(UnsafeBufferPointer(start: data, count: count)))
            return 0
        }
    }
    exit(status)
}

// Without libFuzzer: replay, then random mutations (bit flips, byte changes, splices,
// truncations and repeats) of the corpus for -max_total_time seconds (default 10).
var seconds = 10.0
var inputs: [[UInt8]] = []
for a in args.dropFirst(2) {
    if a.hasPrefix("-max_total_time=") { seconds = Double(a.dropFirst("-max_total_time=".count)) ?? seconds; continue }
    if a.hasPrefix("-") { continue }
    for f in ((try? FileManager.default.contentsOfDirectory(atPath: a)) ?? []).sorted() {
        if let d = FileManager.default.contents(atPath: a + "/" + f) { inputs.append([UInt8](d)) }
    }
}
if inputs.isEmpty { inputs = [[]] }
for i in inputs { target(i) }
var rng = SystemRandomNumberGenerator()
let deadline = Date().addingTimeInterval(seconds)
var runs = inputs.count
while Date() < deadline {
    var x = inputs[Int.random(in: 0..<inputs.count, using: &rng)]
    for _ in 0..<Int.random(in: 1...8, using: &rng) {
        switch Int.random(in: 0..<6, using: &rng) {
        case 0 where !x.isEmpty: x[Int.random(in: 0..<x.count, using: &rng)] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
        case 1 where !x.isEmpty: x[Int.random(in: 0..<x.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
        case 2: x.insert(UInt8.random(in: 0...255, using: &rng), at: Int.random(in: 0...x.count, using: &rng))
        case 3 where !x.isEmpty: x = Array(x.prefix(Int.random(in: 0..<x.count, using: &rng)))
        case 4:
            let other = inputs[Int.random(in: 0..<inputs.count, using: &rng)]
            if !other.isEmpty { x += other[Int.random(in: 0..<other.count, using: &rng)...] }
        default:
            if !x.isEmpty, x.count < 4096 {
                let a = Int.random(in: 0..<x.count, using: &rng), b = min(x.count, a + Int.random(in: 1...16, using: &rng))
                x.insert(contentsOf: Array(repeating: x[a..<b], count: Int.random(in: 1...64, using: &rng)).joined(), at: a)
            }
        }
    }
    target(x)
    runs += 1
}
print("drplan-fuzz \(args[1]): \(runs) inputs (\(inputs.count) from the corpus), no crash")

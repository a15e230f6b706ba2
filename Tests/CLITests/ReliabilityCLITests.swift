import Foundation
import Testing
import TestSupport

/// The fast subset of bench/reliability.py, as an ordinary test: 5 kill -9 points in a backup
/// and 20 single-byte flips (the concurrency cases are ConcurrencyCLITests), and a smaller set
/// with the repository on the S3 server. The full trials and their figures are in
/// docs/reliability.md.
@Suite("Reliability: kill -9 and bit flips (fast subset)")
struct ReliabilityCLITests {
    @Test("5 kills of a backup lose no snapshot; 20 flipped bytes are all detected and named, and no restore is silently wrong")
    func fastSubset() throws {
        guard Tools.hasPython(module: "json") else {
            _ = Tools.skip("the reliability subset", because: "python3 is not installed") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        try Self.trials(["--backup-kills", "5", "--prune-kills", "0", "--flips", "20", "--truncations", "0", "--deletions", "0", "--concurrency", "0", "--no-disk-full"],
                        damaged: 20, concurrency: false)
    }

    @Test("on S3: 3 kills of a backup and 2 of a prune lose nothing; 10 objects flipped, cut or deleted through the S3 API are all detected and named; concurrent runs stay correct")
    func onS3() throws {
        guard S3CLITests.server("the reliability trials on S3") != nil else { return }
        guard Tools.hasPython(module: "boto3") else {
            _ = Tools.skip("the reliability trials on S3", because: "python3's boto3 is not installed (pip install \"moto[server]\" brings it)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        try Self.trials(["--s3", "--backup-kills", "3", "--prune-kills", "2", "--flips", "6", "--truncations", "2", "--deletions", "2", "--concurrency", "1"],
                        damaged: 10, concurrency: true)
    }

    /// Runs bench/reliability.py with `arguments` on drplan's engine and checks every count
    /// the script reports against its target.
    static func trials(_ arguments: [String], damaged: Int, concurrency: Bool) throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let out = dir.path + "/rel.json"
        let r = try Tools.run("python3", [CLITests.root + "/bench/reliability.py", "--drplan", CLITests.binary, "--engines", "builtin"] + arguments
                                + ["--no-write", "--work", dir.path, "--json", out, "--seed", "\(UInt32(Date().timeIntervalSince1970) % 1000)"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any])
        let builtin = try #require((report["engines"] as? [String: Any])?["builtin"] as? [String: Any])
        for trial in ["backup_kills", "prune_kills"] where !(builtin[trial] is NSNull) {
            let kills = try #require(builtin[trial] as? [String: Int], "\(trial): \(builtin[trial] ?? "missing")")
            #expect(kills["trials"] ?? 0 > 0)
            #expect(kills["snapshots_lost"] == 0 && kills["unusable"] == 0 && kills["manual_steps"] == 0 && kills["next_run_failed"] == 0 && kills["evidence_inconsistent"] == 0, "\(trial): \(kills)\n\(r.stdout)")
        }
        let damage = try #require(builtin["damage"] as? [[String: Any]])
        #expect(damage.count == damaged)
        for d in damage {
            // A deleted index file is found (its packs are in no index) but cannot be named:
            // nothing else remembers index files by name (docs/reliability.md).
            let unnameable = d["kind"] as? String == "delete" && d["file"] as? String == "index"
            #expect(d["detected"] as? Bool == true && (d["named"] as? Bool == true || unnameable), "\(d)")
            #expect(d["silent_wrong"] as? Int == 0 && d["undamaged_failed"] as? Int == 0, "\(d)")
        }
        if concurrency {
            let c = try #require(builtin["concurrency"] as? [String: Any])
            #expect(c["cases"] as? Int ?? 0 > 0 && c["corrupt_or_failed"] as? Int == 0 && c["unclear_refusals"] as? Int == 0, "\(c)")
        }
    }
}

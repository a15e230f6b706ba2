import Foundation
import Testing
import TestSupport

/// The fast subset of bench/reliability.py, as an ordinary test: 5 kill -9 points in a backup
/// and 20 single-byte flips (the concurrency cases are ConcurrencyCLITests). The full trials
/// and their figures are in docs/reliability.md.
@Suite("Reliability: kill -9 and bit flips (fast subset)")
struct ReliabilityCLITests {
    @Test("5 kills of a backup lose no snapshot; 20 flipped bytes are all detected and named, and no restore is silently wrong")
    func fastSubset() throws {
        guard Tools.hasPython(module: "json") else {
            _ = Tools.skip("the reliability subset", because: "python3 is not installed") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let dir = try TempDir(); defer { dir.cleanup() }
        let out = dir.path + "/rel.json"
        let r = try Tools.run("python3", [CLITests.root + "/bench/reliability.py", "--drplan", CLITests.binary, "--engines", "builtin",
                                          "--backup-kills", "5", "--prune-kills", "0", "--flips", "20", "--truncations", "0", "--deletions", "0",
                                          "--concurrency", "0", "--no-disk-full", "--no-write", "--work", dir.path, "--json", out, "--seed", "\(UInt32(Date().timeIntervalSince1970) % 1000)"])
        #expect(r.status == 0, "\(r.stdout)\n\(r.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any])
        let builtin = try #require((report["engines"] as? [String: Any])?["builtin"] as? [String: Any])
        let kills = try #require(builtin["backup_kills"] as? [String: Int])
        #expect(kills["snapshots_lost"] == 0 && kills["unusable"] == 0 && kills["manual_steps"] == 0 && kills["next_run_failed"] == 0 && kills["evidence_inconsistent"] == 0, "\(kills)\n\(r.stdout)")
        let damage = try #require(builtin["damage"] as? [[String: Any]])
        #expect(damage.count == 20)
        for d in damage {
            #expect(d["detected"] as? Bool == true && d["named"] as? Bool == true, "\(d)")
            #expect(d["silent_wrong"] as? Int == 0 && d["undamaged_failed"] as? Int == 0, "\(d)")
        }
    }
}

import Foundation
import Testing
import TestSupport

/// Signed checkpoints and bundles (docs/evidence.md): the tampering that a hash chain alone
/// cannot show (a truncated log, a chain recomputed after an edit, a re-hashed bundle) is
/// caught with the key, and each case without it behaves as the threat model says.
@Suite("Command line: signed evidence")
struct EvidenceAnchorCLITests {
    /// Writes a key pair into the demo and configures it; returns the public key's path.
    static func sign(_ dir: TempDir) throws -> String {
        let key = dir.path + "/keys/evidence.key"
        try FileManager.default.createDirectory(atPath: dir.path + "/keys", withIntermediateDirectories: true)
        let gen = try CLITests.run(["evidence", "keygen", "-o", key], cwd: dir.path)
        #expect(gen.status == 0 && gen.stdout.contains("key id "), "\(gen.stderr)")
        let inv = dir.path + "/demo/drplan.yaml"
        let text = try String(contentsOfFile: inv, encoding: .utf8)
        try (text + "evidence:\n  signing_key: file:../keys/evidence.key\n  first_run: 2026-01-01\n").write(toFile: inv, atomically: true, encoding: .utf8)
        return key + ".pub"
    }

    static func sql(_ store: String, _ script: String) throws {
        let r = try Tools.run("python3", ["-c", "import sqlite3, hashlib\ndb = sqlite3.connect('\(store)')\n" + script + "\ndb.commit()"])
        #expect(r.status == 0, "\(r.stderr)")
    }

    /// Recomputes every entry's hash from the first one on, as an attacker who edited an entry would.
    static let recompute = """
        prev = '0' * 64
        for seq, at, ev, det in db.execute('SELECT seq, at, event, detail FROM audit ORDER BY seq').fetchall():
            h = hashlib.sha256('\\n'.join([prev, at, ev, det]).encode()).hexdigest()
            db.execute('UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?', (prev, h, seq))
            prev = h
        """

    func setUp() throws -> (TempDir, String, String, String)? {
        guard Tools.hasPython(module: "sqlite3") else {
            _ = Tools.skip("the signed-evidence tests", because: "python3's sqlite3 module is missing") { Issue.record(Comment(rawValue: $0)) }
            return nil
        }
        let dir = try RunsCLITests.demo()
        let pub = try Self.sign(dir)
        let inv = dir.path + "/demo/drplan.yaml"
        #expect(try CLITests.run(["backup", "-i", inv], cwd: dir.path).status == 0)
        #expect(try CLITests.run(["restore-test", "-i", inv], cwd: dir.path).status == 0)
        return (dir, inv, pub, dir.path + "/demo/.drplan/evidence.sqlite")
    }

    @Test("keygen writes a 0600 private key and its .pub, never overwrites, and a key others can read is refused")
    func keygen() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let key = dir.path + "/k"
        #expect(try CLITests.run(["evidence", "keygen", "-o", key]).status == 0)
        let mode = try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(FileManager.default.fileExists(atPath: key + ".pub"))
        let again = try CLITests.run(["evidence", "keygen", "-o", key])
        #expect(again.status == 3 && again.stderr.contains("never overwrites a key"), "\(again.stderr)")
        // A demo signed with a key others can read does not run: evidence meant to be anchored
        // would not be.
        let demo = try RunsCLITests.demo(); defer { demo.cleanup() }
        _ = try Self.sign(demo)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: demo.path + "/keys/evidence.key")
        let backup = try CLITests.run(["backup", "-i", demo.path + "/demo/drplan.yaml"], cwd: demo.path)
        #expect(backup.status == 3 && backup.stderr.contains("can be read by others") && backup.stderr.contains("chmod 600"), "\(backup.stderr)")
        // A real recovery never waits on the key (it may have burned with the site): it
        // restores, unanchored, and says so.
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: demo.path + "/keys/evidence.key")
        #expect(try CLITests.run(["backup", "-i", demo.path + "/demo/drplan.yaml"], cwd: demo.path).status == 0)
        try FileManager.default.removeItem(atPath: demo.path + "/keys/evidence.key")
        let restore = try CLITests.run(["restore", "documents-nightly", "-i", demo.path + "/demo/drplan.yaml", "--target", demo.path + "/restored"], cwd: demo.path)
        #expect(restore.status == 0 && restore.stderr.contains("restoring anyway, without a signed checkpoint"), "\(restore.stderr)")
        #expect(FileManager.default.fileExists(atPath: demo.path + "/restored/notes.md"))
    }

    @Test("every run is anchored by a signed checkpoint, and the key's first use is in the log")
    func checkpoints() throws {
        guard let (dir, inv, pub, store) = try setUp() else { return }
        defer { dir.cleanup() }
        let lines = try String(contentsOfFile: store + ".checkpoints", encoding: .utf8).split(separator: "\n")
        #expect(lines.count >= 3, "one checkpoint per finished run, and one for the key's configuration")
        let v = try CLITests.run(["evidence", "verify", "-i", inv, "--key", pub], cwd: dir.path)
        #expect(v.status == 0 && v.stdout.contains("checkpoint(s) checked against the chain, signatures checked with key"), "\(v.stdout)\(v.stderr)")
        let events = try Tools.run("python3", ["-c", "import sqlite3; print([r[0] for r in sqlite3.connect('\(store)').execute('SELECT event FROM audit ORDER BY seq')])"]).stdout
        #expect(events.contains("'evidence.key.configured'"), "\(events)")
        // The HTML report's header says the evidence is verified and signed, with the head.
        #expect(try CLITests.run(["report", "-i", inv, "-o", dir.path + "/r"], cwd: dir.path).status == 0)
        let html = try String(contentsOfFile: dir.path + "/r/report.html", encoding: .utf8)
        #expect(html.contains(#"id="evidence-state">verified and signed</span> · chain head: entry "#))
        // Where the key cannot be read (an auditor's copy), signed is not claimed.
        try FileManager.default.moveItem(atPath: dir.path + "/keys/evidence.key", toPath: dir.path + "/evidence.key.away")
        #expect(try CLITests.run(["report", "-i", inv, "-o", dir.path + "/r2"], cwd: dir.path).status == 0)
        let unchecked = try String(contentsOfFile: dir.path + "/r2/report.html", encoding: .utf8)
        #expect(unchecked.contains(#"id="evidence-state">verified; checkpoint signatures not checked (no key here)</span>"#))
    }

    @Test("a log truncated after dropping the triggers is caught, with the key and without")
    func truncated() throws {
        guard let (dir, inv, pub, store) = try setUp() else { return }
        defer { dir.cleanup() }
        try Self.sql(store, "db.execute('DROP TRIGGER audit_no_delete')\ndb.execute('DELETE FROM audit WHERE seq > (SELECT MAX(seq) - 2 FROM audit)')")
        for extra in [["--key", pub], []] {
            let v = try CLITests.run(["evidence", "verify", "-i", inv] + extra, cwd: dir.path)
            #expect(v.status == 1 && v.stderr.contains("entries were removed from the end (the log was truncated)"), "\(extra): \(v.stderr)")
        }
        #expect(try CLITests.run(["check", "-i", inv], cwd: dir.path).status == 3)
    }

    @Test("a chain recomputed after an edit is caught by the checkpoints; with the checkpoints rewritten too, only the key catches it")
    func recomputed() throws {
        guard let (dir, inv, pub, store) = try setUp() else { return }
        defer { dir.cleanup() }
        // Rewrite a run's entry (status and all) and recompute the whole chain.
        try Self.sql(store, "db.execute('DROP TRIGGER audit_no_update')\ndb.execute(\"UPDATE audit SET detail = replace(detail, 'success', 'failed') WHERE seq = (SELECT MIN(seq) FROM audit WHERE event = 'run.finished')\")\n" + Self.recompute)
        let caught = try CLITests.run(["evidence", "verify", "-i", inv], cwd: dir.path)
        #expect(caught.status == 1 && caught.stderr.contains("the chain was rewritten after it was signed"), "\(caught.stderr)")
        // The attacker rewrites the heads in the checkpoint file as well.
        try Self.sql(store, """
            import json
            heads = dict(db.execute('SELECT seq, hash FROM audit').fetchall())
            path = '\(store).checkpoints'
            cps = [json.loads(l) for l in open(path) if l.strip()]
            for c in cps: c['head'] = heads[c['seq']]
            open(path, 'w').write(''.join(json.dumps(c, separators=(',', ':')) + '\\n' for c in cps))
            """)
        let blind = try CLITests.run(["evidence", "verify", "-i", inv], cwd: dir.path)
        #expect(blind.status == 0, "without the key a consistent rewrite is not detectable (docs/evidence.md): \(blind.stderr)")
        let keyed = try CLITests.run(["evidence", "verify", "-i", inv, "--key", pub], cwd: dir.path)
        #expect(keyed.status == 1 && keyed.stderr.contains("does not carry a valid signature of this key: it was forged or edited"), "\(keyed.stderr)")
    }

    @Test("the demo's signed bundle verifies with its key, is refused after an edit and a re-hash, and records its export")
    func bundle() throws {
        guard let (dir, inv, pub, store) = try setUp() else { return }
        defer { dir.cleanup() }
        let zip = dir.path + "/evidence.zip"
        let export = try CLITests.run(["evidence", "export", "-i", inv, "--from", "2026-01-01", "--to", CLITests.nowStamp(), "-o", zip], cwd: dir.path)
        #expect(export.status == 0 && export.stdout.contains("signed"), "\(export.stderr)")
        let ok = try CLITests.run(["evidence", "verify", zip, "--key", pub], cwd: dir.path)
        #expect(ok.status == 0 && ok.stdout.contains("was verified with drplan evidence verify") && ok.stdout.contains("valid Ed25519 signature"), "\(ok.stdout)\(ok.stderr)")
        // The export, the reports in it and the waivers it relied on are in the log.
        let events = try Tools.run("python3", ["-c", "import sqlite3; print([r[0] for r in sqlite3.connect('\(store)').execute('SELECT event FROM audit ORDER BY seq')])"]).stdout
        #expect(events.contains("'bundle.exported'") && events.contains("'report.written'"), "\(events)")
        // Edit a run, re-hash the manifest, re-pack: the signature no longer holds.
        let unpacked = dir.path + "/u"
        _ = try Tools.run("unzip", ["-q", zip, "-d", unpacked])
        let runs = try String(contentsOfFile: unpacked + "/runs.csv", encoding: .utf8)
        try runs.replacingOccurrences(of: "\"success\"", with: "\"failed\"").write(toFile: unpacked + "/runs.csv", atomically: true, encoding: .utf8)
        _ = try Tools.run("sh", ["-c", "cd \(unpacked) && grep -v '  attestation.sig$' MANIFEST.sha256 | sed 's/^[0-9a-f]*  //' | xargs sha256sum > M && mv M MANIFEST.sha256 && zip -q -r ../forged.zip ."])
        let forged = try CLITests.run(["evidence", "verify", dir.path + "/forged.zip", "--key", pub], cwd: dir.path)
        #expect(forged.status == 1 && forged.stderr.contains("is not a valid signature of the manifest") && forged.stdout.contains("FAILED"), "\(forged.stderr)")
        let unkeyed = try CLITests.run(["evidence", "verify", dir.path + "/forged.zip"], cwd: dir.path)
        #expect(unkeyed.status == 1 && unkeyed.stderr.contains("runs.csv does not say what runs.json says"), "\(unkeyed.stderr)")
    }
}

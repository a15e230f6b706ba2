import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// drplan on S3 as a cron job runs it, killed mid-upload.
@Suite("Command line: S3")
struct S3CLITests {
    /// The S3 server the tests use (DRPLAN_S3_*, set by .ci/s3.sh), or nil after recording
    /// the skip: `bucketVariable` names which of its buckets.
    static func server(_ what: String, bucketVariable: String = "DRPLAN_S3_BUCKET") -> (endpoint: String, bucket: String, secret: String)? {
        let env = ProcessInfo.processInfo.environment
        guard let endpoint = env["DRPLAN_S3_ENDPOINT"], let bucket = env[bucketVariable], let secret = env["DRPLAN_S3_SECRET_ACCESS_KEY"], env["DRPLAN_S3_ACCESS_KEY_ID"] != nil else {
            _ = Tools.skip(what, because: "no S3 server with \(bucketVariable) (start moto with: eval \"$(bash .ci/s3.sh start /tmp/drplan-s3)\")") { Issue.record(Comment(rawValue: $0)) }
            return nil
        }
        return (endpoint, bucket, secret)
    }

    /// The demo with a `bucket` storage on the S3 server (a fresh prefix), written by the job to `targets`.
    static func addBucket(_ inv: String, bucket: String, endpoint: String, secret: String, targets: String, extra: String = "") throws {
        let yaml = try String(contentsOfFile: inv, encoding: .utf8).replacingOccurrences(of: "  - id: usb-at-home\n", with: """
              - id: bucket
                kind: cloud-object
                site: home
                url: "s3://\(bucket)/cli-\(UUID().uuidString.prefix(8).lowercased())"
                endpoint: "\(endpoint)"
                create: true
                credentials: { access_key_id: "env:DRPLAN_S3_ACCESS_KEY_ID", secret_access_key: "\(secret)" }\(extra)
              - id: usb-at-home

            """).replacingOccurrences(of: "targets: [office-disk, usb-at-home]", with: "targets: \(targets)")
        try yaml.write(toFile: inv, atomically: true, encoding: .utf8)
    }

    @Test("a backup to S3 killed mid-upload makes no snapshot visible; earlier ones restore and the next run succeeds")
    func killedMidUpload() throws {
        guard let (endpoint, bucket, _) = Self.server("S3 CLI test") else { return }
        let dir = try RunsCLITests.demo(); defer { dir.cleanup() }
        let inv = dir.path + "/demo/drplan.yaml"
        try Self.addBucket(inv, bucket: bucket, endpoint: endpoint, secret: "env:DRPLAN_S3_SECRET_ACCESS_KEY", targets: "[bucket]")
        let first = try CLITests.run(["backup", "-i", inv])
        #expect(first.status == 0, "\(first.stderr)")
        let big = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
        for i in 0..<3 { try dir.write("demo/data/big-\(i).bin", try big.read(upToCount: 30 << 20) ?? Data()) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLITests.binary)
        p.arguments = ["backup", "-q", "-i", inv]
        p.standardError = FileHandle.nullDevice
        try p.run()
        usleep(700_000)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let listed = try CLITests.run(["snapshots", "--format", "json", "-i", inv])
        let snaps = try #require((try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any])?["snapshots"] as? [[String: Any]])
        #expect(snaps.count == 1, "\(listed.stdout)\(listed.stderr)")
        for f in 0..<3 { try FileManager.default.removeItem(atPath: dir.path + "/demo/data/big-\(f).bin") }
        let test = try CLITests.run(["restore-test", "-i", inv])
        #expect(test.status == 0, "\(test.stderr)")
        let again = try CLITests.run(["backup", "-i", inv])
        #expect(again.status == 0, "\(again.stderr)")
        let check = try CLITests.run(["check-repository", "--read-data", "-i", inv])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
    }

    /// Starts the proxy on `port` in front of the S3 server's port; returns once it listens.
    static func proxy(_ port: Int, to target: Int) throws -> Process {
        try Tools.startPython(CLITests.root + "/Tests/Tools/tcp_proxy.py", [String(port), String(target)]).process   // after its "ready"
    }

    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: 0, sin_addr: in_addr(s_addr: inet_addr("127.0.0.1")), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    @Test("the S3 server killed mid-upload: the backup fails loudly, no snapshot becomes visible, and the next run succeeds")
    func serverKilledMidUpload() throws {
        guard let (endpoint, bucket, _) = Self.server("S3 server-kill test") else { return }
        let serverPort = try #require(URL(string: endpoint)?.port, "the S3 endpoint \(endpoint) names no port")
        guard Tools.hasPython(module: "socket") else {
            _ = Tools.skip("S3 server-kill test", because: "python3 is not installed") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let port = Self.freePort()
        var proxy = try Self.proxy(port, to: serverPort)
        defer { kill(proxy.processIdentifier, SIGKILL) }   // SIGTERM may be ignored, inherited from the runner
        let dir = try RunsCLITests.demo(); defer { dir.cleanup() }
        let inv = dir.path + "/demo/drplan.yaml"
        try Self.addBucket(inv, bucket: bucket, endpoint: "http://127.0.0.1:\(port)", secret: "env:DRPLAN_S3_SECRET_ACCESS_KEY", targets: "[bucket]")
        let first = try CLITests.run(["backup", "-i", inv])
        #expect(first.status == 0, "\(first.stderr)")
        let random = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
        for i in 0..<3 { try dir.write("demo/data/big-\(i).bin", try random.read(upToCount: 30 << 20) ?? Data()) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLITests.binary)
        p.arguments = ["backup", "-i", inv]
        let err = Pipe()
        p.standardError = err
        try p.run()
        usleep(1_000_000)
        kill(proxy.processIdentifier, SIGKILL)   // the server is gone, every connection with it
        proxy.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus != 0 && stderr.contains("→ bucket: FAILED") && stderr.contains("cannot reach"), "\(stderr)")
        proxy = try Self.proxy(port, to: serverPort)   // the server is back
        let listed = try CLITests.run(["snapshots", "--format", "json", "-i", inv])
        let snaps = try #require((try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any])?["snapshots"] as? [[String: Any]])
        #expect(snaps.count == 1, "\(listed.stdout)\(listed.stderr)")
        let again = try CLITests.run(["backup", "-i", inv])
        #expect(again.status == 0, "\(again.stderr)")
        let check = try CLITests.run(["check-repository", "--read-data", "-i", inv])
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        let test = try CLITests.run(["restore-test", "-i", inv])
        #expect(test.status == 0, "\(test.stderr)")
    }

    @Test("the S3 secret appears in no output, report, evidence or bundle")
    func canary() throws {
        guard let (endpoint, bucket, secret) = Self.server("S3 canary test") else { return }
        let dir = try RunsCLITests.demo(); defer { dir.cleanup() }
        let inv = dir.path + "/demo/drplan.yaml"
        // The secret reaches drplan as a file: secret, the way a cron job would give it.
        try dir.write("demo/s3-secret.txt", secret + "\n")
        try Self.addBucket(inv, bucket: bucket, endpoint: endpoint, secret: "file:s3-secret.txt", targets: "[office-disk, bucket]")
        var outputs: [String] = []
        for args in [["backup", "-v"], ["restore-test", "--from", "bucket"], ["snapshots"], ["check-repository", "--read-data"], ["history", "--format", "json"],
                     ["facts"], ["check", "--format", "json"], ["plan", "--format", "markdown"], ["report", "-o", dir.path + "/reports"],
                     ["evidence", "export", "--from", "2026-01-01", "--to", CLITests.nowStamp(), "-o", dir.path + "/bundle.zip"]] {
            let r = try CLITests.run(args + ["-i", inv])
            outputs.append(r.stdout + r.stderr)
        }
        #expect(outputs[0].contains("→ bucket: success") && outputs[1].contains("from bucket: passed"), "\(outputs[0])\n\(outputs[1])")
        for (i, o) in outputs.enumerated() { #expect(!o.contains(secret), "output \(i) holds the secret") }
        _ = try Tools.run("unzip", ["-q", "-o", dir.path + "/bundle.zip", "-d", dir.path + "/unzipped"])
        for root in [dir.path + "/reports", dir.path + "/unzipped", dir.path + "/demo/.drplan"] {
            for f in (FileManager.default.enumerator(atPath: root)?.allObjects as? [String]) ?? [] {
                guard let data = FileManager.default.contents(atPath: root + "/" + f) else { continue }
                #expect(data.range(of: Data(secret.utf8)) == nil, "\(root)/\(f) holds the secret")
            }
        }
    }
}

/// S3 Object Lock as a user meets it: declared, verified on every backup, honoured by prune,
/// and refuted loudly where the bucket has none.
@Suite("Command line: S3 Object Lock")
struct S3ObjectLockCLITests {
    /// Governance mode, whose retention anyone with s3:BypassGovernanceRetention can lift: DR107
    /// accepts it only when something else is needed to delete (`delete_requires`).
    static let lock = "\n    object_lock: { mode: governance, days: 40 }\n    access: { admins: [backup-admin], delete_requires: \"the storage team's break-glass account\" }"

    @Test("a declared lock on a bucket without Object Lock fails the backup, and check reports DR106")
    func refuted() throws {
        guard let (endpoint, bucket, _) = S3CLITests.server("S3 Object Lock test") else { return }
        let dir = try RunsCLITests.demo(); defer { dir.cleanup() }
        let inv = dir.path + "/demo/drplan.yaml"
        try S3CLITests.addBucket(inv, bucket: bucket, endpoint: endpoint, secret: "env:DRPLAN_S3_SECRET_ACCESS_KEY", targets: "[office-disk, bucket]", extra: Self.lock)
        let backup = try CLITests.run(["backup", "-i", inv])
        #expect(backup.status == 1, "\(backup.stderr)")
        #expect(backup.stderr.contains("bucket '\(bucket)' has no Object Lock configuration") && backup.stderr.contains("→ bucket: FAILED"), "\(backup.stderr)")
        let check = try CLITests.run(["check", "--format", "json", "-i", inv])
        let findings = try #require((try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any])?["findings"] as? [[String: Any]])
        let dr106 = findings.filter { $0["rule"] as? String == "DR106" }
        #expect(dr106.count == 1 && (dr106.first?["subject"] as? [String: Any])?["id"] as? String == "bucket", "\(check.stdout.prefix(2000))")
        let facts = try CLITests.run(["facts", "-i", inv])
        #expect(facts.stdout.contains("\"immutable_verified\": false"), "\(facts.stdout.prefix(500))")
    }

    @Test("a lock on an Object Lock bucket is verified by every backup, and prune keeps what it still protects")
    func verifiedAndHonoured() throws {
        guard let (endpoint, bucket, _) = S3CLITests.server("S3 Object Lock test", bucketVariable: "DRPLAN_S3_LOCKED_BUCKET") else { return }
        let dir = try RunsCLITests.demo(); defer { dir.cleanup() }
        let inv = dir.path + "/demo/drplan.yaml"
        try S3CLITests.addBucket(inv, bucket: bucket, endpoint: endpoint, secret: "env:DRPLAN_S3_SECRET_ACCESS_KEY", targets: "[bucket]", extra: Self.lock)
        for i in 0..<2 {
            try dir.write("demo/data/changed.txt", "version \(i)\n")
            let backup = try CLITests.run(["backup", "-i", inv])
            #expect(backup.status == 0, "\(backup.stderr)")
        }
        let facts = try CLITests.run(["facts", "-i", inv])
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(facts.stdout.utf8)) as? [String: Any])
        let storage = try #require((doc["storage"] as? [[String: Any]])?.first { $0["id"] as? String == "bucket" })
        #expect(storage["immutable_verified"] as? Bool == true && storage["lock_days"] as? Int == 40, "\(storage)")
        // Capacity, measured after the backup from one listing of the bucket.
        #expect((storage["repository_size"] as? Int ?? 0) > 0 && (storage["object_count"] as? Int ?? 0) >= 5, "\(storage)")
        let asset = try #require((doc["assets"] as? [[String: Any]])?.first)
        #expect(asset["immutable_count"] as? Int == 1, "\(asset)")
        // keep_daily keeps one of today's two snapshots; the other is still locked.
        let prune = try CLITests.run(["prune", "-i", inv])
        #expect(prune.status == 0 && prune.stderr.contains("kept because Object Lock still protects them"), "\(prune.stdout)\(prune.stderr)")
        let listed = try CLITests.run(["snapshots", "--format", "json", "-i", inv])
        let snaps = try #require((try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [String: Any])?["snapshots"] as? [[String: Any]])
        #expect(snaps.count == 2, "\(listed.stdout)")
        let check = try CLITests.run(["check", "--format", "json", "-i", inv])
        let findings = try #require((try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any])?["findings"] as? [[String: Any]])
        let rules = Set(findings.compactMap { $0["rule"] as? String })
        #expect(!rules.contains("DR104") && !rules.contains("DR106") && !rules.contains("DR107"), "\(rules.sorted())")
    }
}

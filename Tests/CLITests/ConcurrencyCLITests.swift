import Foundation
import Testing
import TestSupport
#if canImport(Glibc)
import Glibc
#endif

/// Real drplan processes at the same moment, as two cron lines at 02:00 start them.
@Suite("Command line: concurrent runs, signals, pipes")
struct ConcurrencyCLITests {
    /// The demo with a second job (its own asset) writing into the same repositories.
    static func twoJobs() throws -> TempDir {
        let dir = try RunsCLITests.demo()
        let path = dir.path + "/demo/drplan.yaml"
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: "jobs:\n", with: """
              - { id: letters, kind: file-store, site: office, source: { path: data/letters } }
            jobs:
              - { id: letters-nightly, assets: [letters], schedule: "0 1 * * *", targets: [office-disk, usb-at-home], retention: { keep_last: 1 }, encryption: { at_rest: true, passphrase: "file:passphrase.txt" } }

            """)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return dir
    }

    static func start(_ args: [String], _ dir: TempDir, stdout: Any? = nil) throws -> (Process, Pipe) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLITests.binary)
        p.arguments = args + ["-i", dir.path + "/demo/drplan.yaml"]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = stdout ?? FileHandle.nullDevice
        try p.run()
        return (p, err)
    }

    static func finish(_ p: (Process, Pipe)) -> (status: Int32, stderr: String) {
        let data = p.1.fileHandleForReading.readDataToEndOfFile()
        p.0.waitUntilExit()
        return (p.0.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func runs(_ dir: TempDir) throws -> [[String: Any]] {
        let history = try CLITests.run(["history", "--format", "json", "-i", dir.path + "/demo/drplan.yaml"])
        return try #require((try JSONSerialization.jsonObject(with: Data(history.stdout.utf8)) as? [String: Any])?["runs"] as? [[String: Any]])
    }

    @Test("two jobs' first backups into new repositories at the same moment both succeed, and the repositories stay sound")
    func firstBackupsRace() throws {
        for _ in 0..<3 {
            let dir = try Self.twoJobs(); defer { dir.cleanup() }
            let a = try Self.start(["backup", "documents-nightly"], dir), b = try Self.start(["backup", "letters-nightly"], dir)
            let ra = Self.finish(a), rb = Self.finish(b)
            #expect(ra.status == 0 && rb.status == 0, "\(ra.stderr)\n\(rb.stderr)")
            #expect(try CLITests.run(["backup", "-i", dir.path + "/demo/drplan.yaml"]).status == 0)
            let check = try CLITests.run(["check-repository", "--read-data", "-i", dir.path + "/demo/drplan.yaml"])
            #expect(check.status == 0 && check.stdout.contains("no problems"), "\(check.stdout)\(check.stderr)")
            #expect(try CLITests.run(["restore-test", "-i", dir.path + "/demo/drplan.yaml"]).status == 0)
        }
    }

    @Test("a prune that meets a running backup is refused with the holder's name, or waits with --retry-lock; the backup's data survives")
    func pruneAndBackup() throws {
        let dir = try Self.twoJobs(); defer { dir.cleanup() }
        #expect(try CLITests.run(["backup", "-i", dir.path + "/demo/drplan.yaml"]).status == 0)
        let big = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
        for i in 0..<4 { try dir.write("demo/data/big-\(i).bin", try big.read(upToCount: 40 << 20) ?? Data()) }
        let backup = try Self.start(["backup", "documents-nightly"], dir)
        // Wait until the backup holds its lock.
        let locks = dir.path + "/demo/backup-target/office-disk/drplan-repository/locks"
        for _ in 0..<200 where ((try? FileManager.default.contentsOfDirectory(atPath: locks)) ?? []).isEmpty { usleep(10_000) }
        let refused = try CLITests.run(["prune", "letters-nightly", "-i", dir.path + "/demo/drplan.yaml"])
        let waited = try Self.start(["prune", "letters-nightly", "--retry-lock", "2m"], dir)
        let b = Self.finish(backup), w = Self.finish(waited)
        #expect(b.status == 0, "\(b.stderr)")
        if refused.status != 0 {
            #expect(refused.stderr.contains("is locked by backup (shared) by pid"), "\(refused.stderr)")
        }
        #expect(w.status == 0, "\(w.stderr)")
        let test = try CLITests.run(["restore-test", "-i", dir.path + "/demo/drplan.yaml", "--from", "office-disk"])
        #expect(test.status == 0, "\(test.stderr)")
        #expect(try CLITests.run(["check-repository", "--read-data", "-i", dir.path + "/demo/drplan.yaml"]).status == 0)
    }

    @Test("a restore test during a backup passes; a second run of the same job is refused with 'already running'")
    func backupAndRestoreTest() throws {
        let dir = try Self.twoJobs(); defer { dir.cleanup() }
        #expect(try CLITests.run(["backup", "-i", dir.path + "/demo/drplan.yaml"]).status == 0)
        let big = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
        for i in 0..<4 { try dir.write("demo/data/big-\(i).bin", try big.read(upToCount: 40 << 20) ?? Data()) }
        let backup = try Self.start(["backup", "documents-nightly"], dir)
        usleep(150_000)
        let again = try CLITests.run(["backup", "documents-nightly", "-i", dir.path + "/demo/drplan.yaml"])
        var tests: [Tools.Output] = []
        for _ in 0..<3 { tests.append(try CLITests.run(["restore-test", "-i", dir.path + "/demo/drplan.yaml"])) }
        let b = Self.finish(backup)
        #expect(b.status == 0, "\(b.stderr)")
        for t in tests { #expect(t.status == 0, "\(t.stderr)") }
        if again.status != 0 {
            #expect(again.status == 3 && again.stderr.contains("job 'documents-nightly' is already running"), "\(again.stderr)")
            #expect(!again.stderr.contains("SQLite error"))
        }
    }

    @Test("SIGINT says what happens, records the run as interrupted and releases the locks; SIGPIPE does not kill a backup")
    func signals() throws {
        let dir = try RunsCLITests.demo(); defer { dir.cleanup() }
        #expect(try CLITests.run(["backup", "-i", dir.path + "/demo/drplan.yaml"]).status == 0)
        let big = try #require(FileHandle(forReadingAtPath: "/dev/urandom"))
        for i in 0..<6 { try dir.write("demo/data/big-\(i).bin", try big.read(upToCount: 40 << 20) ?? Data()) }
        let p = try Self.start(["backup"], dir)
        usleep(300_000)
        kill(p.0.processIdentifier, SIGINT)
        let r = Self.finish(p)
        #expect(r.status == 130, "\(r.stderr)")
        #expect(r.stderr.contains("SIGINT received") && r.stderr.contains("recorded as interrupted"), "\(r.stderr)")
        let statuses = try runs(dir).map { $0["status"] as? String ?? "" }
        #expect(statuses.contains("interrupted") && !statuses.contains("running"), "\(statuses)")
        for t in ["office-disk", "usb-at-home"] {
            let locks = dir.path + "/demo/backup-target/\(t)/drplan-repository/locks"
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: locks)) ?? []).isEmpty)
        }
        // `drplan backup -v | head -1`: the reader goes away; the backup still completes.
        let piped = try Tools.run("sh", ["-c", "'\(CLITests.binary)' backup -i '\(dir.path)/demo/drplan.yaml' 2>&1 | head -1"])
        #expect(piped.stdout.contains("drplan: backup"), "\(piped.stdout)")
        let after = try runs(dir)
        #expect(after.suffix(2).allSatisfy { $0["status"] as? String == "success" }, "\(after.suffix(2).map { $0["status"] ?? "" })")
    }
}

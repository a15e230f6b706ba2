import Foundation
import Testing
import TestSupport

@Suite("Command line: check, eval, rules")
struct CheckCLITests {
    static let now = ["--now", "2026-11-22T00:00:00Z"]

    func run(_ args: [String], cwd: String = CLITests.root) throws -> CLITests.Result { try CLITests.run(args, cwd: cwd, env: ["NO_COLOR": "1"]) }

    @Test("exit codes: 0 clean, 1 findings at or above --fail-on, 2 bad input")
    func exitCodes() throws {
        #expect(try run(["check", "-i", "samples/clean.yaml"] + Self.now).status == 0)
        let office = try run(["check", "-i", "samples/small-office.yaml"] + Self.now)
        #expect(office.status == 1)
        #expect(office.stdout.hasSuffix("29 findings (1 critical, 15 high, 10 medium, 3 low), 0 waived — FAIL (fails on high and above)\n"))
        #expect(office.stdout.contains("high      DR103") == false)
        #expect(office.stdout.contains("critical  DR703 plaintext-secret  document storage.s3-backup.credentials.secret_key"))
        #expect(try run(["check", "-i", "samples/clinic.yaml", "--fail-on", "critical"] + Self.now).status == 0)
        #expect(try run(["check", "-i", "samples/clinic.yaml", "--fail-on", "none"] + Self.now).status == 0)
        #expect(try run(["check", "-i", "samples/clinic.yaml", "--fail-on", "severe"] + Self.now).status == 2)
        #expect(try run(["check", "-i", "Tests/DRInventoryTests/Fixtures/invalid/cycle.yaml"]).status == 2)
        #expect(try run(["check", "-i", "samples/clean.yaml", "--policies", "/nonexistent"]).status == 2)
        #expect(try run(["check", "-i", "samples/clean.yaml", "--framework", "sox"]).status == 2)
    }

    @Test("the JSON report validates against the committed schema, for every sample")
    func jsonSchema() throws {
        guard Tools.hasPython(module: "jsonschema") else {
            _ = Tools.skip("JSON Schema validation", because: "python3 with the jsonschema package is not installed (pip install jsonschema)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let dir = try TempDir(); defer { dir.cleanup() }
        let schema = CLITests.root + "/docs/schemas/drplan.report.v1.json"
        for sample in ["small-office", "betpro", "clinic", "clean"] {
            let out = dir.path + "/\(sample).json"
            let r = try run(["check", "-i", "samples/\(sample).yaml", "--format", "json", "-o", out] + Self.now)
            #expect(r.status == (sample == "clean" ? 0 : 1))
            let problem = try Tools.schemaProblem(document: out, schema: schema)
            #expect(problem == nil, "\(sample): \(problem ?? "")")
        }
        // A report that breaks the contract is rejected, so the validation above can fail.
        let bad = try dir.write("bad.json", "{\"schema\": \"drplan.report/v1\"}")
        #expect(try Tools.schemaProblem(document: bad, schema: schema) != nil)
    }

    @Test("the JSON report's core fields")
    func jsonFields() throws {
        let r = try run(["check", "-i", "samples/betpro.yaml", "--format", "json"] + Self.now)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let summary = try #require(json["summary"] as? [String: Any])
        #expect(summary["passed"] as? Bool == false && summary["fail_on"] as? String == "high" && summary["waived"] as? Int == 1)
        #expect((summary["counts"] as? [String: Int])?["high"] == 35)
        let findings = try #require(json["findings"] as? [[String: Any]])
        #expect(findings.count == 56)
        let first = try #require(findings.first)
        #expect(first["rule"] as? String == "DR703" && first["severity"] as? String == "critical")
        let waived = try #require(findings.first { $0["status"] as? String == "waived" })
        #expect((waived["waiver"] as? [String: Any])?["approved_by"] as? String == "ciso@betpro.example")
        let inventory = try #require(json["inventory"] as? [String: Any])
        #expect(inventory["files"] as? [String] == ["samples/betpro.yaml"])
        let digest = try Tools.run("sha256sum", [CLITests.root + "/samples/betpro.yaml"]).stdout.prefix(64)
        #expect(inventory["sha256"] as? String == String(digest))
    }

    @Test("--baseline: a second run with the first report as baseline passes")
    func baselineCLI() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let first = try run(["check", "-i", "samples/small-office.yaml", "--format", "json", "-o", dir.path + "/base.json"] + Self.now)
        #expect(first.status == 1)
        let second = try run(["check", "-i", "samples/small-office.yaml", "--baseline", dir.path + "/base.json"] + Self.now)
        #expect(second.status == 0)
        #expect(second.stdout.contains("29 existing"))
        #expect(try run(["check", "-i", "samples/small-office.yaml", "--baseline", dir.path + "/none.json"]).status == 2)
    }

    @Test("eval prints JSON, typed or plain; errors exit 2 with a position")
    func eval() throws {
        let r = try run(["eval", "-i", "samples/betpro.yaml", "inventory.assets.filter(a, a.copy_count < 3).map(a, a.id)"] + Self.now)
        #expect(r.status == 0)
        #expect(r.stdout.replacingOccurrences(of: " ", with: "").replacingOccurrences(of: "\n", with: "") == "[\"hr-files\",\"laptops\",\"dev-sandbox\"]")
        let dir = try TempDir(); defer { dir.cleanup() }
        #expect(try run(["eval", "--typed", "1 + 2"], cwd: dir.path).stdout == "{\"int\":\"3\"}\n")
        #expect(try run(["eval", "--", "-1 < 0"], cwd: dir.path).stdout == "true\n")
        #expect(try run(["eval", "duration('1h') + duration('30m')"], cwd: dir.path).stdout == "\"5400s\"\n")
        #expect(try run(["eval", "quantity('500GB') / rate('250MB/s')"], cwd: dir.path).stdout == "2000\n")
        let bad = try run(["eval", "1 / 0"], cwd: dir.path)
        #expect(bad.status == 2 && bad.stderr.contains("division by zero"))
        let syntax = try run(["eval", "1 +"], cwd: dir.path)
        #expect(syntax.status == 2 && syntax.stderr.hasPrefix("<expression>:1:4: error: syntax error"))
    }

    @Test("rules lists the catalog and explains one rule")
    func rules() throws {
        let list = try run(["rules"])
        #expect(list.status == 0 && list.stdout.split(separator: "\n").count == 50)
        let one = try run(["rules", "DR104"])
        #expect(one.status == 0 && one.stdout.contains("ransomware") && one.stdout.contains("example 1 (passes)"))
        #expect(try run(["rules", "DR999"]).status == 2)
    }

    @Test("the catalog is embedded: a copy of the binary works from any directory")
    func installedBinary() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let copy = dir.path + "/bin/drplan"
        try FileManager.default.createDirectory(atPath: dir.path + "/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: CLITests.binary, toPath: copy)
        try FileManager.default.copyItem(atPath: CLITests.root + "/samples/clinic.yaml", toPath: dir.path + "/drplan.yaml")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: copy)
        p.arguments = ["check", "--now", "2026-11-22T00:00:00Z", "--fail-on", "none"]
        p.currentDirectoryURL = URL(fileURLWithPath: dir.path)
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(text.contains("20 findings"))
    }
}

@Suite("Command line: plan")
struct PlanCLITests {
    func run(_ args: [String]) throws -> CLITests.Result { try CLITests.run(args, env: ["NO_COLOR": "1"]) }

    @Test("plan prints a verdict per default scenario, then the details; JSON has the spec's fields")
    func plan() throws {
        let r = try run(["plan", "-i", "samples/betpro.yaml"])
        #expect(r.status == 0)
        let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines.prefix(3).map { String($0.prefix(20)) } == ["FAIL ransomware: 10 ", "FAIL site:fra-dc1: 8", "OK   site:lon-office"])
        let json = try run(["plan", "-i", "samples/clean.yaml", "--scenario", "site:hq", "--format", "json", "--now", "2026-11-22T00:00:00Z"])
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let scenario = try #require((doc["scenarios"] as? [[String: Any]])?.first)
        #expect(scenario["scenario"] as? String == "site:hq")
        let row = try #require((scenario["assets"] as? [[String: Any]])?.first)
        for key in ["asset", "lost", "recoverable", "source", "restore_time", "data_loss", "wave", "start", "ready_at", "meets_rto", "meets_rpo"] {
            #expect(row.keys.contains(key), "\(key)")
        }
        #expect(try run(["plan", "-i", "samples/clean.yaml", "--scenario", "site:nowhere"]).status == 2)
        #expect(try run(["plan", "-i", "samples/clean.yaml", "--parallel", "0"]).status == 2)
        let md = try run(["plan", "-i", "samples/clinic.yaml", "--format", "markdown"])
        #expect(md.status == 0 && md.stdout.contains("# Disaster-recovery runbook: Riverside Family Clinic"))
    }
}

@Suite("Command line: report")
struct ReportCLITests {
    @Test("report writes every format and the runbook, links the scenarios, and prints the paths")
    func report() throws {
        let dir = try TempDir(); defer { dir.cleanup() }
        let out = dir.path + "/audit"
        let r = try CLITests.run(["report", "-i", "samples/clinic.yaml", "--now", "2026-11-22T00:00:00Z", "-o", out])
        #expect(r.status == 0)
        let names = ["report.json", "report.html", "report.sarif", "report.junit.xml", "report.md", "runbook.html", "runbook.md"]
        #expect(r.stdout.split(separator: "\n").map(String.init) == names.map { out + "/" + $0 })
        for n in names { #expect(FileManager.default.fileExists(atPath: out + "/" + n), "\(n)") }
        let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
        let runbook = try String(contentsOfFile: out + "/runbook.html", encoding: .utf8)
        #expect(html.contains("href=\"runbook.html#ransomware\"") && runbook.contains("id=\"ransomware\""))
        #expect(html.contains("href=\"runbook.html#site-clinic\"") && runbook.contains("id=\"site-clinic\""))
        // Default folder: reports/<organization-slug>-<date>/ under the working directory.
        let d = try CLITests.run(["report", "-q", "-i", CLITests.root + "/samples/clean.yaml", "--now", "2026-11-22T00:00:00Z"], cwd: dir.path)
        #expect(d.status == 0 && d.stdout.isEmpty)
        #expect(FileManager.default.fileExists(atPath: dir.path + "/reports/northwind-logistics-2026-11-22/report.html"))
        #expect(try CLITests.run(["report", "-i", "samples/clean.yaml", "-o", "/proc/forbidden/report"]).status == 2)
    }
}

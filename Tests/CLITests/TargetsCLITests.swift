import Foundation
import Testing
import TestSupport

/// The trial that opened the runs issue: a job whose second target is never written.
@Suite("Command line: a copy never made is never counted")
struct TargetsCLITests {
    @Test("a target drplan cannot write fails the backup, check fails with DR604, plan and report recover from nothing there")
    func unwrittenTarget() throws {
        let dir = try RunsCLITests.demo(); defer { dir.cleanup() }
        let inv = dir.path + "/demo/drplan.yaml"
        let yaml = try String(contentsOfFile: inv, encoding: .utf8)
            .replacingOccurrences(of: "  - id: usb-at-home\n", with: "  - { id: s3-bucket, kind: cloud-object, site: home, url: \"sftp://backup@nas/office\", immutable: true, encryption: { at_rest: true } }\n  - id: usb-at-home\n")
            .replacingOccurrences(of: "targets: [office-disk, usb-at-home]", with: "targets: [office-disk, s3-bucket]")
        try yaml.write(toFile: inv, atomically: true, encoding: .utf8)
        let b = try CLITests.run(["backup", "-i", inv])
        #expect(b.status == 1 && b.stderr.contains("s3-bucket: FAILED"), "\(b.stderr)")
        let check = try CLITests.run(["check", "-i", inv])
        #expect(check.status == 1 && check.stdout.contains("DR604 every-target-proven  job documents-nightly (s3-bucket)") && check.stdout.contains("DR101 three-copies"), "\(check.stdout)")
        let plan = try CLITests.run(["plan", "-i", inv, "--scenario", "site:office"])
        #expect(plan.stdout.contains("LOST for good: documents"), "\(plan.stdout)")
        let report = try CLITests.run(["report", "-i", inv, "-o", dir.path + "/out", "-q"])
        #expect(report.status == 1 || report.status == 0, "\(report.stderr)")
        let html = try String(contentsOfFile: dir.path + "/out/report.html", encoding: .utf8)
        #expect(html.contains("chip  missing") && html.contains("s3-bucket ✗ failed") && html.contains("site:office: 1 asset to restore; LOST for good"))
    }
}

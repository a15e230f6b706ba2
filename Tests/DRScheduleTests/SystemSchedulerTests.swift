import CEL
import DRInventory
import Foundation
import Testing
import TestSupport
@testable import DRSchedule

/// The system scheduler formats, checked against the real schedulers' own arithmetic:
/// `systemd-analyze calendar` for OnCalendar=, croniter (PyPI) for cron lines, plistlib for
/// launchd.
@Suite("System scheduler formats")
struct SystemSchedulerTests {
    static let base = Int64(Civil.days(year: 2026, month: 12, day: 1)) * 86_400 + 3_600 * 21 + 17 * 60

    static func schedule(_ text: String, zone: String? = nil) throws -> Schedule {
        try Schedule.parse(text).inZone(zone.flatMap(ZoneRules.named))
    }

    static func fires(_ s: Schedule, from: Int64, count: Int) -> [Int64] {
        var out: [Int64] = []
        var t = Timestamp(seconds: from)
        while out.count < count, let n = s.nextFire(after: t) { out.append(n.seconds); t = n }
        return out
    }

    static func iso(_ t: Int64) -> String {
        let day = Civil.floorDiv(Int(t), 86_400)
        let (y, m, d) = Civil.date(days: day)
        let s = Int(t) - day * 86_400
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d", y, m, d, s / 3600, s / 60 % 60, s % 60)
    }

    /// The next `count` elapses of a timer with these OnCalendar= values after `base`, as
    /// systemd computes them (the union of each value's elapses).
    static func systemdElapses(_ values: [String], base: Int64, count: Int) throws -> [Int64]? {
        let r = try Tools.run(executable: "/usr/bin/env", ["systemd-analyze", "calendar", "--iterations=\(count)", "--base-time=\(iso(base)) UTC"] + values, env: ["TZ": "UTC"])
        guard r.status == 0 else { Issue.record("systemd-analyze failed for \(values): \(r.stderr)"); return nil }
        var out: Set<Int64> = []
        let pattern = try Regex(#"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) UTC"#)
        for line in r.stdout.split(separator: "\n") {
            guard let m = try pattern.firstMatch(in: String(line)) else { continue }
            let f = (1...6).map { Int(m.output[$0].substring ?? "") ?? 0 }
            out.insert(Int64(Civil.days(year: f[0], month: f[1], day: f[2])) * 86_400 + Int64(f[3] * 3600 + f[4] * 60 + f[5]))
        }
        return Array(out.sorted().prefix(count))
    }

    static var haveSystemdAnalyze: Bool { (try? Tools.run("systemd-analyze", ["--version"]).status) == 0 }

    @Test("OnCalendar= elapses as drplan computes: 200 generated crons and hand-picked ones in four zones (systemd-analyze)")
    func systemdAgrees() throws {
        guard Self.haveSystemdAnalyze else {
            _ = Tools.skip("systemd-analyze comparison", because: "no systemd-analyze on PATH (apt-get install systemd)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        var cases: [(String, String?)] = CronGenerator.generated(count: 200, seed: 1_401).map { ($0, nil) }
        // Zoned ones whose next 20 runs from December cross no clock change.
        for zone in ["Europe/London", "America/New_York", "Asia/Kolkata", "Australia/Sydney"] {
            cases += [("30 2 * * *", zone), ("0 9-17 * * mon-fri", zone), ("15 3 1,15 * *", zone), ("0 0 1 * mon", zone)]
        }
        cases += [("every 15m", nil), ("every 90m", nil), ("every 4h", nil), ("every 1d", nil), ("@weekly", nil)]
        var compared = 0
        for (text, zone) in cases {
            let s = try Self.schedule(text, zone: zone)
            guard s.everFires else { continue }
            let calendar = SystemdFormat.onCalendar(try SystemSchedule.from(s, zone: s.zone))
            let ours = Self.fires(s, from: Self.base, count: 20)
            guard let theirs = try Self.systemdElapses(calendar, base: Self.base, count: 20) else { continue }
            #expect(theirs == ours, "\(text) in \(zone ?? "UTC") as \(calendar)")
            compared += 1
        }
        #expect(compared > 150)
    }

    @Test("a time skipped by DST: drplan runs it at the clock change, systemd skips the day, and drplan warns")
    func dstGapDiffers() throws {
        guard Self.haveSystemdAnalyze else {
            _ = Tools.skip("systemd-analyze DST comparison", because: "no systemd-analyze on PATH (apt-get install systemd)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let s = try Self.schedule("30 2 * * *", zone: "America/New_York")
        let from = Int64(Civil.days(year: 2027, month: 3, day: 12)) * 86_400
        let ours = Self.fires(s, from: from, count: 4)
        let change = Int64(Civil.days(year: 2027, month: 3, day: 14)) * 86_400 + 7 * 3600  // 03:00 EDT
        #expect(ours.contains(change))
        let theirs = try #require(try Self.systemdElapses(SystemdFormat.onCalendar(try SystemSchedule.from(s, zone: s.zone)), base: from, count: 3))
        #expect(!theirs.contains(change))
        #expect(theirs.allSatisfy { !(Civil.days(year: 2027, month: 3, day: 14)...Civil.days(year: 2027, month: 3, day: 14)).contains(Civil.floorDiv(Int($0), 86_400)) })
        let job = try Self.job(schedule: "30 2 * * *", zone: "America/New_York")
        let warning = try #require(SystemdFormat.dstWarning(job: job, now: Timestamp(seconds: from - 86_400 * 30)))
        #expect(warning.contains("2027-03-14") && warning.contains("systemd skips it"))
        #expect(SystemdFormat.dstWarning(job: try Self.job(schedule: "30 4 * * *", zone: "America/New_York"), now: Timestamp(seconds: from)) == nil)
    }

    @Test("cron lines fire as croniter computes, for 200 generated expressions")
    func croniterAgrees() throws {
        guard Tools.hasPython(module: "croniter") else {
            _ = Tools.skip("croniter comparison", because: "python3 has no croniter (pip install croniter)") { Issue.record(Comment(rawValue: $0)) }
            return
        }
        let exprs = CronGenerator.generated(count: 200, seed: 977).filter { (try? Self.schedule($0).everFires) == true }
        let dir = try TempDir()
        defer { dir.cleanup() }
        let input = try dir.write("exprs.txt", exprs.joined(separator: "\n"))
        let r = try Tools.run("python3", ["-c", """
            import sys, datetime
            from croniter import croniter
            base = datetime.datetime.fromtimestamp(int(sys.argv[2]), tz=datetime.timezone.utc)
            for line in open(sys.argv[1]):
                it = croniter(line.strip(), base, implement_cron_bug=True)  # Vixie: a day field starting with * ANDs
                print(" ".join(str(int(it.get_next(datetime.datetime).timestamp())) for _ in range(20)))
            """, input, String(Self.base)])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == exprs.count)
        for (e, line) in zip(exprs, lines) {
            let theirs = line.split(separator: " ").compactMap { Int64($0) }
            #expect(Self.fires(try Self.schedule(e), from: Self.base, count: 20) == theirs, "\(e)")
        }
    }

    static func job(schedule text: String, zone: String?, id: String = "nightly") throws -> Job {
        let yaml = """
            drplan: 1
            \(zone.map { "timezone: \($0)" } ?? "")
            sites: [{id: office, kind: office}]
            storage: [{id: usb, kind: removable, site: office, path: /mnt/usb}]
            assets: [{id: docs, kind: file-store, site: office, source: {path: /srv/docs}}]
            jobs:
              - {id: \(id), assets: [docs], schedule: "\(text)", targets: [usb]}
            """
        let inv = try InventoryLoader.load(texts: [(name: "t.yaml", text: yaml)])
        return try #require(inv.jobs.first)
    }

    static let invocation = Invocation(executable: "/usr/local/bin/drplan", inventories: ["/srv/dr/My Office/drplan.yaml"], workingDirectory: "/srv/dr/My Office", job: "nightly")

    @Test("systemd units: absolute command from the inventory's directory, Persistent=true, one OnCalendar per entry")
    func systemdText() throws {
        let job = try Self.job(schedule: "0 1 1 * mon", zone: "Europe/London")
        let out = ScheduleGenerator.generate([job], format: .systemd, invocation: { _ in Self.invocation }, inventory: Self.invocation.inventory, cronUser: nil, now: Timestamp(seconds: Self.base))
        #expect(out.files.map(\.name) == ["drplan-nightly.service", "drplan-nightly.timer"])
        let service = out.files[0].contents, timer = out.files[1].contents
        #expect(service.contains(#"ExecStart=/usr/local/bin/drplan backup nightly -i "/srv/dr/My Office/drplan.yaml""#))
        #expect(service.contains(#"WorkingDirectory="/srv/dr/My Office""#))
        #expect(timer.contains("OnCalendar=*-*-01 01:00:00 Europe/London\nOnCalendar=Mon *-*-* 01:00:00 Europe/London\n"))
        #expect(timer.contains("Persistent=true"))
        #expect(timer.contains("WantedBy=timers.target"))
    }

    @Test("cron lines: CRON_TZ, flock -n, quoted paths, and a crontab's other lines kept on install and uninstall")
    func cronText() throws {
        let job = try Self.job(schedule: "30 2 * * *", zone: "Europe/London")
        let out = ScheduleGenerator.generate([job], format: .cron, invocation: { _ in Self.invocation }, inventory: Self.invocation.inventory, cronUser: "root", now: Timestamp(seconds: Self.base))
        let text = try #require(out.files.first).contents
        #expect(text.contains("CRON_TZ=Europe/London\n30 2 * * * root cd '/srv/dr/My Office' && mkdir -p .drplan && flock -n .drplan/drplan-nightly.cron.lock /usr/local/bin/drplan backup nightly -i '/srv/dr/My Office/drplan.yaml'\n"))
        let existing = "MAILTO=ops@example.com\n0 5 * * * /usr/bin/other\n"
        let merged = CronBlocks.merge(existing: existing, new: text, jobs: ["nightly"], inventory: Self.invocation.inventory)
        #expect(merged.hasPrefix(existing))
        #expect(merged.contains("flock -n"))
        // Installing again replaces, never doubles.
        let twice = CronBlocks.merge(existing: merged, new: text, jobs: ["nightly"], inventory: Self.invocation.inventory)
        #expect(twice == merged)
        #expect(CronBlocks.remove(existing: merged, jobs: [], inventory: Self.invocation.inventory) == existing)
        // every 90m: two lines, UTC.
        let every = try Self.job(schedule: "every 90m", zone: "Europe/London")
        let e = ScheduleGenerator.generate([every], format: .cron, invocation: { _ in Self.invocation }, inventory: "x", cronUser: nil, now: Timestamp(seconds: Self.base))
        let lines = try #require(e.files.first).contents.split(separator: "\n").filter { $0.contains("flock") }
        #expect(lines.map { $0.split(separator: " ").prefix(5).joined(separator: " ") } == ["0 0,3,6,9,12,15,18,21 * * *", "30 1,4,7,10,13,16,19,22 * * *"])
        #expect(try #require(e.files.first).contents.contains("CRON_TZ=UTC"))
    }

    @Test("launchd plist parses with plistlib, with one calendar dictionary per combination")
    func launchdText() throws {
        let job = try Self.job(schedule: "0,30 2 * * mon-fri", zone: nil)
        let out = ScheduleGenerator.generate([job], format: .launchd, invocation: { _ in Self.invocation }, inventory: Self.invocation.inventory, cronUser: nil, now: Timestamp(seconds: Self.base))
        let file = try #require(out.files.first)
        #expect(file.name == "org.drplan.nightly.plist")
        let dir = try TempDir()
        defer { dir.cleanup() }
        let path = try dir.write(file.name, file.contents)
        let r = try Tools.run("python3", ["-c", """
            import plistlib, sys, json
            p = plistlib.load(open(sys.argv[1], 'rb'))
            print(json.dumps([p['Label'], p['ProgramArguments'], p['WorkingDirectory'], len(p['StartCalendarInterval']), p['StartCalendarInterval'][0]]))
            """, path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains(#"["org.drplan.nightly", ["/usr/local/bin/drplan", "backup", "nightly", "-i", "/srv/dr/My Office/drplan.yaml"], "/srv/dr/My Office", 10, {"Weekday": 1, "Hour": 2, "Minute": 0}]"#))
    }

    @Test("schedules no calendar can express say why and what to do")
    func unconvertible() throws {
        #expect(throws: Unconvertible.self) { try SystemSchedule.from(.continuous, zone: nil) }
        let twoDays = try Schedule.parse("every 2d")
        do {
            _ = try SystemSchedule.from(twoDays, zone: nil)
            Issue.record("every 2d converted")
        } catch {
            #expect(error.reason.contains("divides 24 hours"))
        }
        #expect(throws: Unconvertible.self) { try SystemSchedule.from(try Schedule.parse("every 7h"), zone: nil) }
        #expect(throws: Unconvertible.self) { try SystemSchedule.from(try Schedule.parse("every 90s"), zone: nil) }
        #expect(try SystemSchedule.from(try Schedule.parse("every 15m"), zone: nil).entries == [CalendarEntry(minutes: [0, 15, 30, 45], hours: Array(0...23))])
    }
}

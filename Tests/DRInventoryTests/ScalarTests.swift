import CEL
import Testing
@testable import DRInventory

@Suite("Scalars")
struct ScalarTests {
    @Test("durations", arguments: [
        ("15m", 900), ("1h30m", 5400), ("7y", 7 * 365 * 86_400), ("2w", 14 * 86_400), ("90s", 90), ("0s", 0),
        ("1d12h", 129_600), ("35d", 35 * 86_400),
    ] as [(String, Int64)])
    func duration(text: String, seconds: Int64) throws {
        #expect(try TimeSpan.parse(text).seconds == seconds)
    }

    @Test("bad durations", arguments: ["soon", "15", "m", "1.5h", "-5m", "15 m x", "", "1h30", "99999999999999999999y", "300000000000y"])
    func badDuration(text: String) {
        #expect(throws: ScalarError.self) { try TimeSpan.parse(text) }
    }

    @Test("duration spelling round-trips")
    func durationDescription() throws {
        #expect(TimeSpan(seconds: 5400).description == "1h30m")
        #expect(TimeSpan(seconds: 0).description == "0s")
        #expect(try TimeSpan.parse(TimeSpan(seconds: 31_536_000 + 3_661).description).seconds == 31_536_000 + 3_661)
    }

    @Test("sizes", arguments: [
        ("500GB", 500_000_000_000), ("512GiB", 549_755_813_888), ("1.5TB", 1_500_000_000_000), ("0B", 0),
        ("40TB", 40_000_000_000_000), ("1KiB", 1024), ("1 MB", 1_000_000), ("2PB", 2_000_000_000_000_000),
    ] as [(String, Int64)])
    func size(text: String, bytes: Int64) throws {
        #expect(try ByteSize.parse(text) == bytes)
    }

    @Test("bad sizes", arguments: ["-1TB", "500", "GB", "5XB", "1.2.3GB", ".5GB", "9999999PB"])
    func badSize(text: String) {
        #expect(throws: ScalarError.self) { try ByteSize.parse(text) }
    }

    @Test("rates")
    func rates() throws {
        #expect(try ByteRate.parse("250MB/s") == 250_000_000)
        #expect(try ByteRate.parse("1GiB/s") == 1_073_741_824)
        #expect(throws: ScalarError.self) { try ByteRate.parse("250MB") }
        #expect(throws: ScalarError.self) { try ByteRate.parse("0MB/s") }
    }

    @Test("percents")
    func percents() throws {
        #expect(try Percent.parse("80%") == 0.8)
        #expect(try Percent.parse("0.8") == 0.8)
        #expect(try Percent.parse("100%") == 1)
        for bad in ["80", "120%", "-1%", "abc", "1.5"] {
            #expect(throws: ScalarError.self, "\(bad)") { try Percent.parse(bad) }
        }
    }

    @Test("timestamps")
    func timestamps() throws {
        #expect(try Timestamp.parse("2026-09-30T10:00:00Z").description == "2026-09-30T10:00:00Z")
        #expect(try Timestamp.parse("2026-09-30") == Timestamp.parse("2026-09-30T00:00:00Z"))
        #expect(try Timestamp.parse("2026-09-30T12:00:00+02:00") == Timestamp.parse("2026-09-30T10:00:00Z"))
        #expect(try Timestamp.parse("2026-09-30T10:00:00.5Z").nanos == 500_000_000)
        #expect(try Timestamp.parse("2028-02-29").description == "2028-02-29T00:00:00Z")
        #expect(try Timestamp.parse("1969-12-31T23:59:59Z").seconds == -1)
        for bad in ["2027-02-29", "2026-13-01", "2026-09-30T10:00:00", "2026-09-30T25:00:00Z", "30/09/2026", "2026-09-30T10:00Z", "tomorrow"] {
            #expect(throws: ScalarError.self, "\(bad)") { try Timestamp.parse(bad) }
        }
    }

    @Test("secret references")
    func secrets() {
        #expect(SecretRef.classify("env:PGPASSWORD") == .env("PGPASSWORD"))
        #expect(SecretRef.classify("file:/etc/key") == .file("/etc/key"))
        #expect(SecretRef.classify("vault:secret/db") == .vault("secret/db"))
        #expect(SecretRef.classify("hunter2") == .literal)
        #expect(SecretRef.classify("env:") == .literal)
        #expect(SecretRef.literal.display == "<redacted>")
    }

    @Test("ids")
    func ids() throws {
        #expect(try Identifier.validate("fra-dc1") == "fra-dc1")
        #expect(try Identifier.validate("a.b_c-9") == "a.b_c-9")
        for bad in ["Fra", "-x", "", "a b", String(repeating: "a", count: 129), "é"] {
            #expect(throws: ScalarError.self, "\(bad)") { try Identifier.validate(bad) }
        }
        #expect(try Identifier.validateRule("DR702") == "DR702")
        #expect(throws: ScalarError.self) { try Identifier.validateRule("dr702") }
    }

    @Test("did-you-mean suggestions")
    func suggestions() {
        #expect(suggestion(for: "retension", among: ["retention", "targets"]) == "retention")
        #expect(suggestion(for: "shedule", among: ["schedule", "lag"]) == "schedule")
        #expect(suggestion(for: "zzzzzz", among: ["retention", "targets"]) == nil)
    }

    @Test("calendar arithmetic agrees with known dates")
    func civil() {
        #expect(Civil.days(year: 1970, month: 1, day: 1) == 0)
        #expect(Civil.weekday(days: Civil.days(year: 2026, month: 11, day: 22)) == 0)  // a Sunday
        #expect(Civil.date(days: Civil.days(year: 2028, month: 2, day: 29)) == (2028, 2, 29))
        #expect(Civil.daysInMonth(year: 2100, month: 2) == 28)
        #expect(Civil.daysInMonth(year: 2000, month: 2) == 29)
    }
}

import Testing
import Yams
import TestSupport
@testable import DRInventory

@Suite("Redacted inventory copies (evidence bundles)")
struct SourceRedactionTests {
    func redact(_ text: String) throws -> (String, Int) {
        switch SourceRedaction.redact(Array(text.utf8)) {
        case .redacted(let out, let masked): return (out, masked)
        case .withheld(let reason): Issue.record("withheld: \(reason)"); return ("", 0)
        }
    }

    static let hostile = """
        drplan: 1
        # old token=COMMENTSECRET0 (rotated)
        organization: "Acme token=ORGSECRET1"
        storage:
          - id: s3
            url: s3://bucket/prefix
            credentials: { access_key_id: AKIAEXAMPLE, secret_access_key: 'it''s-SECRET2' }
        jobs:
          - id: j
            encryption:
              passphrase: &pp !!str PLAINSECRET3   # keep this comment
            labels:
              api_token: |
                BLOCKSECRET4
                more
              note: "see https://u:URLSECRET5@wiki.example/x"
              other: *pp
              env_ref: { password: "env:DB_PASSWORD" }
            options: { backup: "dump --password=FLAGSECRET6 -v", list: [a, b] }
        """

    @Test("every way of writing a secret is masked in place; comments, layout and line numbers stay")
    func hostileFile() throws {
        let (out, masked) = try redact(Self.hostile)
        for n in 0...6 { #expect(!out.contains("SECRET\(n)"), "SECRET\(n) survived:\n\(out)") }
        #expect(masked == 7)
        let before = Self.hostile.split(separator: "\n", omittingEmptySubsequences: false)
        let after = out.split(separator: "\n", omittingEmptySubsequences: false)
        // The block scalar's two content lines are folded into the mask; every other line keeps its number.
        #expect(after.count == before.count - 2)
        #expect(after[10] == "      passphrase: &pp !!str \"<redacted>\"   # keep this comment")
        #expect(after[1] == "# old token=<redacted> (rotated)")
        #expect(after[6].contains("access_key_id: AKIAEXAMPLE") && after[6].contains("secret_access_key: \"<redacted>\""))
        #expect(after[12] == "      api_token: \"<redacted>\"")
        #expect(after[13] == "      note: \"see https://u:<redacted>@wiki.example/x\"")
        #expect(out.contains("password: \"env:DB_PASSWORD\""), "a reference is where the secret is, not the secret")
        #expect(out.contains("list: [a, b]"))
    }

    @Test("a file with no secret is copied byte for byte")
    func untouched() throws {
        let text = "drplan: 1\nsites: [{ id: hq, kind: office }]   # a comment\n"
        let (out, masked) = try redact(text)
        #expect(out == text && masked == 0)
    }

    @Test("a secret whose extent cannot be found for certain is withheld, never copied")
    func foldedPlain() {
        let text = "drplan: 1\njobs:\n  - id: j\n    encryption:\n      passphrase: first\n        FOLDEDSECRET\n"
        guard case .withheld(let reason) = SourceRedaction.redact(Array(text.utf8)) else {
            Issue.record("a folded plain secret was copied"); return
        }
        #expect(reason.contains("line 5"))
    }

    @Test("non-ASCII text before a secret does not shift where it is masked")
    func unicodeColumns() throws {
        let (out, _) = try redact("drplan: 1\nlabels: { note: \"café ☕ 𝄞\", token: TOKENSECRET9 }\n")
        #expect(out == "drplan: 1\nlabels: { note: \"café ☕ 𝄞\", token: \"<redacted>\" }\n")
    }
}

@Suite("secret_args: options of a command whose value is secret")
struct SecretArgsTests {
    static let job = """
        drplan: 1
        sites: [{ id: hq, kind: office }]
        storage: [{ id: disk, kind: disk, site: hq, path: /tmp/x }]
        assets: [{ id: docs, kind: file-store, site: hq }]
        jobs:
          - id: export
            assets: [docs]
            engine: command
            schedule: "@daily"
            targets: [disk]
            options: { backup: "tool --license LICENSE-1234 --site-key='SITE 99' --user bob -k KEYVALUE" }
            secret_args: [--license, --site-key, -k]

        """

    @Test("the values after the listed options are masked, quoted or not, with = or a space; others stay")
    func masking() throws {
        let inv = try InventoryLoader.load(texts: [("j.yaml", Self.job)])
        let flags = try #require(inv.jobs.first).secretArgs
        #expect(flags == ["--license", "--site-key", "-k"])
        let cmd = "tool --license LICENSE-1234 --site-key='SITE 99' --user bob -k KEYVALUE"
        #expect(Redaction.command(cmd, secretFlags: flags) == "tool --license <redacted> --site-key=<redacted> --user bob -k <redacted>")
        #expect(Redaction.optionValues(cmd, flags: flags) == ["LICENSE-1234", "SITE 99", "KEYVALUE"])
        // The bundle's copy knows the job's secret_args too.
        guard case .redacted(let copy, _) = SourceRedaction.redact(Array(Self.job.utf8)) else { Issue.record("withheld"); return }
        #expect(!copy.contains("LICENSE-1234") && !copy.contains("SITE 99") && !copy.contains("KEYVALUE") && copy.contains("--user bob"))
        #expect(copy.contains("secret_args: [--license, --site-key, -k]"), "the option names themselves are not secrets")
    }

    @Test("secret_args lists option names, on a command job only; each mistake is located")
    func validation() {
        let bad = Self.job.replacingOccurrences(of: "secret_args: [--license, --site-key, -k]", with: "secret_args: [--license, LICENSE]")
        #expect(throws: InputError.self) { try InventoryLoader.load(texts: [("j.yaml", bad)]) }
        do { _ = try InventoryLoader.load(texts: [("j.yaml", bad)]) } catch {
            #expect(error.diagnostics.map(\.description).contains("j.yaml:12:30: error: 'LICENSE' in 'secret_args' of job 'export' is not an option name; list the options whose value is secret, such as --token or -k"), "\(error.diagnostics)")
        }
        let builtin = Self.job.replacingOccurrences(of: "engine: command", with: "engine: builtin")
        do { _ = try InventoryLoader.load(texts: [("j.yaml", builtin)]); Issue.record("accepted") } catch {
            #expect(error.diagnostics.contains { $0.description.hasPrefix("j.yaml:12:5: error: 'secret_args' in job 'export' applies to the command engine's commands") }, "\(error.diagnostics)")
        }
    }
}

@Suite("Redaction's fast path")
struct RedactionFastPathTests {
    /// The fast path decides from a few byte patterns that text cannot hold a secret; the
    /// regular expressions must agree on every string it lets through.
    @Test("property: text the fast path skips is text the full scrub leaves alone (5,000 random strings)")
    func fastPathIsSound() {
        var rng = SplitMix(seed: 17)
        let pieces = ["a", "p", "-", "--", ":", "/", "//", "=", " ", "@", "?", "&", "token", "password", "pwd", "Authorization", "AUTHOR",
                      "bearer", "https", "://", "x", "hooks.slack.com/services/", "-p", "secret", "'", "\"", "1", "é",
                      ": ", "\"token\": ", "passphrase:", "authorizauthorization", "env:", "Pass", "hook", "logic.azure.com/workflows/"]
        var skipped = 0
        for _ in 0..<5_000 {
            let s = (0..<Int(rng.next() % 8)).map { _ in pieces[Int(rng.next() % UInt64(pieces.count))] }.joined()
            if !Redaction.mayHoldSecret(s) {
                skipped += 1
                #expect(Redaction.scrub(s) == s, "the fast path skipped \(s.debugDescription), which the scrub changes")
            }
        }
        #expect(skipped > 250)
    }

    @Test("a secret's name with a colon: prose and JSON are masked, references and URLs stay")
    func colonForms() {
        #expect(Redaction.text("old password: hunter22, rotated") == "old password: <redacted>, rotated")
        #expect(Redaction.text(#"{"api_token": "abc123", "user": "bob"}"#) == #"{"api_token": <redacted>, "user": "bob"}"#)
        #expect(Redaction.text("give secret_access_key: env:AWS_SECRET") == "give secret_access_key: env:AWS_SECRET")
        #expect(Redaction.text("token://example") == "token://example")
    }

    @Test("redaction is idempotent: a value whose first quoted part is masked loses its tail too (found by fuzzing)")
    func idempotent() {
        let s = #"# secret_key: "wJalrXUtnFEude: ["*.yaMI/K7MDENG/bPxRfiCYEXAMPLEKEY""#
        let once = Redaction.text(s)
        #expect(!once.contains("EXAMPLEKEY") && Redaction.text(once) == once, "\(once)")
    }

    @Test("secret-named keys, any case, apart from identifiers")
    func keys() {
        for k in ["password", "DB_PASSWORD", "apiToken", "secret_access_key", "Passphrase", "x-auth", "privateKey", "pwd"] { #expect(Redaction.isSecretKey(k), "\(k)") }
        for k in ["id", "access_key_id", "KEY_STORAGE", "author", "name", "path", "secret_args", "Keys"] { #expect(!Redaction.isSecretKey(k), "\(k)") }
    }
}

@Suite("Escaping: YAML double-quoted strings, CSV fields")
struct YAMLQuotingTests {
    @Test("CSV fields are quoted, and one a spreadsheet would run as a formula is defused")
    func csv() {
        #expect(Escape.csvField("plain") == "\"plain\"")
        #expect(Escape.csvField("say \"hi\"") == "\"say \"\"hi\"\"\"")
        for f in ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] { #expect(Escape.csvField(f).hasPrefix("\"'"), "\(f)") }
        #expect(Escape.csvField("") == "\"\"")
    }

    /// (U+FEFF is left out: escaped or not, libyaml drops it at the start of a value.)
    @Test("every character reads back as itself")
    func roundTrip() throws {
        var rng = SplitMix(seed: 8)
        for _ in 0..<300 {
            let s = String(String.UnicodeScalarView((0..<Int(rng.next() % 12)).compactMap { _ in
                Unicode.Scalar([0x00, 0x09, 0x0A, 0x0D, 0x1B, 0x22, 0x27, 0x5C, 0x7F, 0x85, 0xA0, 0x2028, 0x2029, 0x41, 0xE9, 0x1D11E][Int(rng.next() % 16)])
            }))
            let doc = "v: " + Escape.yamlDoubleQuoted(s) + "\n"
            let node = try #require(try Yams.compose(yaml: doc))
            #expect(node["v"]?.string == s, "\(s.unicodeScalars.map { String($0.value, radix: 16) })")
        }
    }
}

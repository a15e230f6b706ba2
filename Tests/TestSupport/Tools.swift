import Foundation

/// External programs the integration tests drive (python3 packages, Chromium). A missing tool
/// skips with a printed reason locally, and fails under DRPLAN_REQUIRE_INTEGRATION=1 (CI).
public enum Tools {
    public static let requireIntegration = ProcessInfo.processInfo.environment["DRPLAN_REQUIRE_INTEGRATION"] == "1"

    public struct Output: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
        public init(status: Int32, stdout: String, stderr: String) { self.status = status; self.stdout = stdout; self.stderr = stderr }
    }

    /// Runs a program found on PATH, waiting for it.
    public static func run(_ program: String, _ args: [String], cwd: String? = nil) throws -> Output {
        try run(executable: "/usr/bin/env", [program] + args, cwd: cwd)
    }

    /// Runs an executable, waiting for it; output is read fully before the wait, stderr on its
    /// own thread so a chatty program cannot fill one pipe while the other is being read.
    public static func run(executable: String, _ args: [String], cwd: String? = nil, env: [String: String] = [:]) throws -> Output {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        if !env.isEmpty { p.environment = ProcessInfo.processInfo.environment.merging(env) { _, new in new } }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        nonisolated(unsafe) var errData = Data()
        let reader = Thread { errData = err.fileHandleForReading.readDataToEndOfFile() }
        reader.start()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while !reader.isFinished { Thread.sleep(forTimeInterval: 0.01) }
        return Output(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Starts a python3 script that serves in the background (the proxies of Tests/Tools) and
    /// returns once it has printed its first line ("ready …"), with that line. Its stderr goes
    /// nowhere, so it never holds the test runner's pipes open. Stop it with SIGKILL: SIGTERM
    /// may be ignored, inherited from the runner.
    public static func startPython(_ script: String, _ args: [String]) throws -> (process: Process, line: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        var line = Data()
        while let byte = try out.fileHandleForReading.read(upToCount: 1), let b = byte.first, b != UInt8(ascii: "\n") { line.append(b) }
        return (p, String(decoding: line, as: UTF8.self))
    }

    /// Whether `python3 -c "import MODULE"` works.
    public static func hasPython(module: String) -> Bool {
        (try? run("python3", ["-c", "import \(module)"]).status) == 0
    }

    /// The first Chromium-family browser on PATH.
    public static func chromium() -> String? {
        for name in ["chromium", "chromium-browser", "google-chrome"] where (try? run("which", [name]).status) == 0 { return name }
        return nil
    }

    /// Prints why a test is skipping; records a failure when integration tests are required.
    /// Returns false, for `guard … else { return }` call sites.
    public static func skip(_ what: String, because reason: String, record: (String) -> Void) -> Bool {
        print("\(what): skipped, \(reason)")
        if requireIntegration { record("DRPLAN_REQUIRE_INTEGRATION=1 but \(what) cannot run: \(reason)") }
        return false
    }

    /// Validates a JSON file against a JSON Schema with Python's jsonschema; nil when valid.
    public static func schemaProblem(document: String, schema: String) throws -> String? {
        let r = try run("python3", ["-c", """
            import json, sys, jsonschema
            schema = json.load(open(sys.argv[2]))
            cls = jsonschema.validators.validator_for(schema)
            errors = sorted(cls(schema).iter_errors(json.load(open(sys.argv[1]))), key=lambda e: list(e.path))
            for e in errors[:5]: print(list(e.path), e.message[:300])
            sys.exit(1 if errors else 0)
            """, document, schema])
        return r.status == 0 ? nil : r.stdout + r.stderr
    }
}

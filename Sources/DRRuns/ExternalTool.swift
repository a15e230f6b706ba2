import Foundation

/// External programs the engines drive (restic, rsync, pg_dump…): finding them, and running
/// them without a shell, with secrets passed through the environment only.
public enum ExternalTool {
    /// The executable `name` on `PATH`. Its absence is a permanent `missingTool` error naming
    /// the Debian package to install, which the CLI turns into exit 3.
    public static func locate(_ name: String, package: String, path: String? = nil) throws(RepositoryError) -> String {
        let search = path ?? ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in search.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        throw RepositoryError(.missingTool, RunMessages.missingTool(name, package: package))
    }

    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs `binary` with `args` and waits. stdout is delivered line by line to `onLine` as it
    /// arrives (restic's JSON progress); stderr is read on its own thread so neither pipe can
    /// fill while the other is read. `environment` adds to (or, with nil values, removes from)
    /// drplan's own environment.
    public static func run(_ binary: String, _ args: [String], cwd: String? = nil, environment: [String: String?] = [:],
                           onLine: ((Substring) -> Void)? = nil) throws(RepositoryError) -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = args
        if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        do { try p.run() } catch {
            throw RepositoryError(.io, "cannot run \(binary): \(error.localizedDescription)")
        }
        let errBox = Box()
        let reader = Thread { errBox.data = err.fileHandleForReading.readDataToEndOfFile() }
        reader.start()
        var collected = Data(), pending = Data()
        let handle = out.fileHandleForReading
        while true {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            collected.append(chunk)
            guard let onLine else { continue }
            pending.append(chunk)
            while let nl = pending.firstIndex(of: UInt8(ascii: "\n")) {
                onLine(Substring(String(decoding: pending[pending.startIndex..<nl], as: UTF8.self)))
                pending.removeSubrange(pending.startIndex...nl)
            }
        }
        if let onLine, !pending.isEmpty { onLine(Substring(String(decoding: pending, as: UTF8.self))) }
        p.waitUntilExit()
        while !reader.isFinished { Thread.sleep(forTimeInterval: 0.005) }
        return Result(status: p.terminationStatus, stdout: String(decoding: collected, as: UTF8.self), stderr: String(decoding: errBox.data, as: UTF8.self))
    }

    private final class Box: @unchecked Sendable { var data = Data() }
}

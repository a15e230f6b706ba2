import Foundation

/// Where output goes. Diagnostics go to stderr; results to stdout or `-o`.
enum Console {
    nonisolated(unsafe) static var useColor = true

    static func out(_ s: String) {
        FileHandle.standardOutput.write(Data((s + "\n").utf8))
    }

    static func error(_ s: String) {
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }

    /// `FILE:LINE:COL: error: message`, with "error" in red on a terminal.
    static func diagnostic(_ location: String, _ message: String) {
        let label = colorEnabled(fd: 2) ? "\u{1B}[31merror\u{1B}[0m" : "error"
        error("\(location): \(label): \(message)")
    }

    /// Colour only on a terminal, and never when NO_COLOR is set or --no-color was given.
    static func colorEnabled(fd: Int32) -> Bool {
        useColor && isatty(fd) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
    }

    /// Writes `text` to `path` atomically (temporary file, then rename), or to stdout when nil.
    static func write(_ text: String, to path: String?) throws(CommandFailure) {
        guard let path else {
            FileHandle.standardOutput.write(Data(text.utf8))
            return
        }
        do {
            if path == "/dev/stdout" || path == "-" { FileHandle.standardOutput.write(Data(text.utf8)); return }
            if path.hasPrefix("/dev/") {
                guard let h = FileHandle(forWritingAtPath: path) else { throw CocoaError(.fileWriteNoPermission) }
                h.write(Data(text.utf8))
                return
            }
            try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            Console.error("drplan: error: cannot write '\(path)': \(error.localizedDescription); check that the directory exists and is writable")
            throw CommandFailure(status: .badInput)
        }
    }
}

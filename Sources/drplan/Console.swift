import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where output goes. Diagnostics go to stderr; results to stdout or `-o`.
enum Console {
    nonisolated(unsafe) static var useColor = true

    static func out(_ s: String) { write(fd: 1, s + "\n") }

    static func error(_ s: String) { write(fd: 2, s + "\n") }

    /// A plain write loop: a reader that went away (EPIPE, with SIGPIPE ignored) loses the
    /// rest of the text, but never stops the run that is printing it.
    static func write(fd: Int32, _ s: String) {
        var bytes = Array(s.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            bytes = bytes.dropFirst(n)
        }
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

    /// A write to the output failed (as opposed to producing what was to be written).
    struct OutputError: Error { var underlying: any Error }

    /// Streams output to stdout, a device, or a file. A file is written beside its final name
    /// and renamed into place when complete, so a failed run never leaves half a report.
    /// An error `body` throws other than from the sink is a rendering bug, exit 3.
    static func stream(to path: String?, what: String, _ body: ((ArraySlice<UInt8>) throws -> Void) throws -> Void) throws(CommandFailure) {
        var temporary: String? = nil
        do {
            let handle: FileHandle
            if let path, path != "-", path != "/dev/stdout" {
                if path.hasPrefix("/dev/") {
                    guard let h = FileHandle(forWritingAtPath: path) else { throw OutputError(underlying: CocoaError(.fileWriteNoPermission)) }
                    handle = h
                } else {
                    let url = URL(fileURLWithPath: path)
                    let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp-\(getpid())").path
                    guard FileManager.default.createFile(atPath: tmp, contents: nil), let h = FileHandle(forWritingAtPath: tmp) else {
                        throw OutputError(underlying: CocoaError(.fileWriteNoPermission))
                    }
                    temporary = tmp
                    handle = h
                }
            } else {
                handle = FileHandle.standardOutput
            }
            try body { piece in
                do { try handle.write(contentsOf: piece) } catch { throw OutputError(underlying: error) }
            }
            if let temporary, let path {
                do { try handle.close() } catch { throw OutputError(underlying: error) }
                guard rename(temporary, path) == 0 else { throw OutputError(underlying: POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)) }
            }
        } catch let error as OutputError {
            if let temporary { unlink(temporary) }
            Console.error("drplan: error: cannot write '\(path ?? "stdout")': \(error.underlying.localizedDescription); check that the directory exists and is writable")
            throw CommandFailure(status: .badInput)
        } catch {
            if let temporary { unlink(temporary) }
            Console.error("drplan: error: cannot render the \(what): \(error); this is a bug in drplan, please report it")
            throw CommandFailure(status: .environment)
        }
    }

    /// Writes `text` to `path` atomically (temporary file, then rename), or to stdout when nil.
    static func write(_ text: String, to path: String?) throws(CommandFailure) {
        try stream(to: path, what: "output") { sink in try sink(Array(text.utf8)[...]) }
    }
}

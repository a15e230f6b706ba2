import ArgumentParser
import CEL
import DRInventory
import DRRuns
import Foundation

/// `--progress`: how a long backup or restore reports how far it has got (runs.md).
enum ProgressMode: String, ExpressibleByArgument, CaseIterable {
    /// A redrawn status line on stderr when stderr is a terminal; nothing otherwise.
    case auto
    /// One JSON object per line on stderr, at most once a second plus one when a run
    /// completes, for wrappers.
    case json
    case none
}

/// Options shared by the commands that move data.
struct ProgressOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("auto (a status line on a terminal), json (one line per second on stderr) or none.", valueName: "mode"))
    var progress: ProgressMode = .auto

    /// The sink for the runner, or nil when nothing is to be shown.
    func sink(quiet: Bool) -> ProgressSink? {
        switch progress {
        case .none: return nil
        case .auto:
            guard !quiet, isatty(2) == 1 else { return nil }
            let d = ProgressDisplay(json: false)
            return { d.update($0) }
        case .json:
            let d = ProgressDisplay(json: true)
            return { d.update($0) }
        }
    }
}

/// Throttles progress updates from the engine's threads and renders them with rate and ETA.
final class ProgressDisplay: @unchecked Sendable {
    private let json: Bool
    private let lock = NSLock()
    private var started = Date()
    private var lastShown = Date.distantPast
    private var lastFiles: Int64 = -1
    /// The run's final line is shown once: the engine's last update and the runner's closing
    /// one can both say "complete" (restic's last status line sometimes does).
    private var finished = false

    init(json: Bool) { self.json = json }

    func update(_ p: RunProgress) {
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        if p.phase == .started {
            started = now; lastFiles = 0; finished = false
            if json { FileHandle.standardError.write(Data("{\"event\":\"start\",\"run\":\(JSONWriter().string(.string(p.label ?? "")))}\n".utf8)) }
            return
        }
        lastFiles = p.files
        // Only the runner's `done` event closes a run: an engine's last count is progress.
        let complete = p.phase == .done
        guard !finished, complete || now.timeIntervalSince(lastShown) >= (json ? 1 : 0.1) else { return }
        finished = complete
        lastShown = now
        let elapsed = max(now.timeIntervalSince(started), 0.001)
        let rate = Double(p.bytes) / elapsed
        var eta: Double? = nil
        if let total = p.totalBytes, rate > 0, total >= p.bytes { eta = Double(total - p.bytes) / rate }
        if json {
            var fields = ["\"files\":\(p.files)", "\"bytes\":\(p.bytes)", "\"bytes_per_second\":\(Int64(rate))", "\"elapsed_seconds\":\(String(format: "%.1f", elapsed))"]
            if let t = p.totalFiles { fields.append("\"total_files\":\(t)") }
            if let t = p.totalBytes { fields.append("\"total_bytes\":\(t)") }
            if let eta { fields.append("\"eta_seconds\":\(Int64(eta.rounded(.up)))") }
            fields.append("\"done\":\(complete)")
            if let s = p.status { fields.append("\"status\":\"\(s)\"") }
            FileHandle.standardError.write(Data(("{\"event\":\"\(complete ? "done" : "progress")\",\"progress\":{" + fields.joined(separator: ",") + "}}\n").utf8))
        } else {
            var line = "\(p.files)" + (p.totalFiles.map { "/\($0)" } ?? "") + " files, " + ByteSize.format(p.bytes) + (p.totalBytes.map { " of " + ByteSize.format($0) } ?? "")
            line += ", " + ByteSize.format(Int64(rate)) + "/s"
            if let eta, !complete { line += ", ETA " + TimeSpan(seconds: Int64(eta.rounded(.up))).description }
            // \r and erase-to-end-of-line: the line is redrawn in place; a finished run keeps its line.
            FileHandle.standardError.write(Data(("\r\u{1B}[K" + line + (complete ? "\n" : "")).utf8))
        }
    }
}

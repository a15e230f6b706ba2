import CEL
import DRInventory
import Foundation

/// The JSON payload of plain `https://`, `file:` and `exec:` notifications, and the
/// delivery of `file:` and `exec:` ones (Notifications.swift chooses the format per URL and
/// posts the HTTP ones).
public enum Alerts {
    /// The JSON every alert carries.
    public static func payload(_ r: RunRecord) -> Data {
        var body: [String: String] = [
            "event": "drplan.run.\(r.status.rawValue)", "run": r.id, "kind": r.kind.rawValue, "engine": r.engine,
            "status": r.status.rawValue, "host": r.host, "started_at": EvidenceStore.iso(r.startedAt),
        ]
        if let v = r.job { body["job"] = v }
        if let v = r.restoreTest { body["restore_test"] = v }
        if let v = r.storage { body["storage"] = v }
        if let v = r.error { body["error"] = Redaction.text(v) }
        if let v = r.finishedAt { body["finished_at"] = EvidenceStore.iso(v) }
        // drplan's own JSON writer: it cannot fail, so no alert goes out empty.
        let fields = body.map { ($0.key, Value.string($0.value)) }.sorted { $0.0 < $1.0 }
        return Data(JSONWriter(pretty: false).string(.object(fields)).utf8)
    }

    static func deliver(_ body: Data, to uri: String, baseDirectory: String, timeout: TimeInterval) -> String? {
        if uri.hasPrefix("file:") {
            let raw = String(uri.dropFirst(5))
            let path = raw.hasPrefix("/") ? raw : baseDirectory + "/" + raw
            if !FileManager.default.fileExists(atPath: path) { FileManager.default.createFile(atPath: path, contents: nil) }
            guard let h = FileHandle(forWritingAtPath: path) else { return "cannot open \(path) for appending" }
            defer { try? h.close() }
            do {
                try h.seekToEnd()
                try h.write(contentsOf: body + Data("\n".utf8))
            } catch { return "cannot append to \(path): \(error.localizedDescription)" }
            return nil
        }
        if uri.hasPrefix("exec:") {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", String(uri.dropFirst(5))]
            p.currentDirectoryURL = URL(fileURLWithPath: baseDirectory)
            let input = Pipe()
            p.standardInput = input
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            do { try p.run() } catch { return "cannot run the command: \(error.localizedDescription)" }
            // A hook may exit without reading its input: that must not kill drplan with SIGPIPE.
            let previous = signal(SIGPIPE, SIG_IGN)
            try? input.fileHandleForWriting.write(contentsOf: body)
            try? input.fileHandleForWriting.close()
            signal(SIGPIPE, previous)
            p.waitUntilExit()
            return p.terminationStatus == 0 ? nil : "the command exited with status \(p.terminationStatus)"
        }
        return "only file: and exec: URIs are delivered here; Notifications sends the others"
    }

}

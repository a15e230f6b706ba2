import DRPolicy

/// The waivers a written report or bundle relied on, as audit entries: one per waiver that
/// turned at least one finding into a waived one.
public enum WaiverAudit {
    public static func applied(_ result: CheckResult) -> [(event: String, detail: [String: String])] {
        var seen = Set<String>()
        var out: [(event: String, detail: [String: String])] = []
        for f in result.findings where f.status == .waived {
            guard let w = f.waiver, seen.insert("\(w.rule)/\(w.subject)").inserted else { continue }
            let waived = result.findings.filter { $0.status == .waived && $0.waiver?.rule == w.rule && $0.waiver?.subject == w.subject }.count
            out.append((event: "waiver.applied", detail: ["id": "\(w.rule)/\(w.subject)", "rule": w.rule, "subject": w.subject, "approved_by": w.approvedBy,
                                                         "expires": w.expires.description, "findings": String(waived)]))
        }
        return out
    }
}

import CEL
import DRFacts
import DRInventory
import Foundation

extension MeasuredEvidence {
    /// The latest finished run of each job, of each job's target, and of each restore test,
    /// as the facts read them.
    public init(runs: [RunRecord]) {
        self.init()
        for r in runs { recordHostRun(host: r.host, at: Timestamp(r.startedAt)) }
        for r in runs where r.status != .running {
            let at = Timestamp(r.finishedAt ?? r.startedAt)
            switch r.kind {
            case .backup:
                guard let job = r.job else { continue }
                record(job: job, target: r.storage, asset: r.asset, at: at, success: r.status == .success)
            case .restoreTest:
                if let job = r.job, let storage = r.storage { recordRestore(job: job, target: storage, at: at, success: r.status == .success) }
                guard let t = r.restoreTest, tests[t].map({ at >= $0.at }) ?? true else { continue }
                let seconds = Int64(((r.finishedAt ?? r.startedAt).timeIntervalSince(r.startedAt)).rounded(.up))
                tests[t] = TestRun(at: at, result: r.status == .success ? .pass : .fail, duration: TimeSpan(seconds: max(1, seconds)), restored: r.verifiedBytes)
                let elapsed = (r.finishedAt ?? r.startedAt).timeIntervalSince(r.startedAt)
                if r.status == .success, let storage = r.storage, r.verifiedBytes >= Self.minimumRateSample, elapsed > 0,
                   restoreRates[storage].map({ at >= $0.at }) ?? true {
                    restoreRates[storage] = RestoreRate(at: at, bytesPerSecond: Double(r.verifiedBytes) / elapsed, bytes: r.verifiedBytes)
                }
            case .prune:
                continue
            }
        }
    }

}

import CEL
import DRInventory
import DRPolicy

/// What every report format is given besides the check result. The clock and version are
/// injected, so golden files are byte-for-byte reproducible.
public struct ReportContext: Sendable {
    public var toolVersion: String
    /// When the report was written (not `as_of`, which is the `--now` the check ran at).
    public var generatedAt: Timestamp
    /// ANSI colour, for the text format on a terminal.
    public var color: Bool
    /// Disaster-scenario verdicts to show and link (`drplan report` writes the runbook beside
    /// the report): (verdict line, link target).
    public var scenarios: [(verdict: String, link: String)]

    public init(toolVersion: String, generatedAt: Timestamp, color: Bool = false, scenarios: [(verdict: String, link: String)] = []) {
        self.toolVersion = toolVersion
        self.generatedAt = generatedAt
        self.color = color
        self.scenarios = scenarios
    }
}

/// One output format of `drplan check` and `drplan report`: a pure function of the result.
public protocol ReportFormat {
    /// The `--format` name.
    static var name: String { get }
    /// The file `drplan report` writes this format to.
    static var fileName: String { get }
    static func render(_ result: CheckResult, context: ReportContext) throws -> String
    /// The same bytes as `render`, handed to `sink` in pieces. Formats whose reports grow
    /// large (JSON: every finding and every fact) stream them instead of building one string.
    static func write(_ result: CheckResult, context: ReportContext, to sink: (ArraySlice<UInt8>) throws -> Void) throws
}

extension ReportFormat {
    public static func write(_ result: CheckResult, context: ReportContext, to sink: (ArraySlice<UInt8>) throws -> Void) throws {
        try sink(Array(try render(result, context: context).utf8)[...])
    }
}

/// Every format, in the order `drplan report` writes them.
public enum ReportFormats {
    public static let all: [any ReportFormat.Type] = [JSONFormat.self, HTMLFormat.self, SARIFFormat.self, JUnitFormat.self, MarkdownFormat.self]
    public static let byName: [String: any ReportFormat.Type] = Dictionary(uniqueKeysWithValues: ([TextFormat.self] + all).map { ($0.name, $0) })
}

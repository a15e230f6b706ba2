import Foundation

/// A place in an inventory or policy file. Line and column are 1-based, as editors count them.
public struct SourceLocation: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// `FILE:LINE:COL`, or just `FILE` when no position is known (line 0).
    public var description: String { line > 0 ? "\(file):\(line):\(column)" : file }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        (a.file, a.line, a.column) < (b.file, b.line, b.column)
    }
}

/// One problem found in user input, printed as `FILE:LINE:COL: error: message`.
public struct Diagnostic: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var location: SourceLocation
    public var message: String

    public init(_ location: SourceLocation, _ message: String) {
        self.location = location
        self.message = message
    }

    /// One line, whatever the message quotes: see `Escape.line`.
    public var description: String { Escape.line("\(location): error: \(message)") }

    public static func < (a: Diagnostic, b: Diagnostic) -> Bool {
        a.location != b.location ? a.location < b.location : a.message < b.message
    }
}

/// Thrown when input cannot be used. It carries every problem found, sorted by file and
/// position, so that one run shows them all (the spec forbids stopping at the first).
public struct InputError: Error, Sendable, CustomStringConvertible {
    public let diagnostics: [Diagnostic]

    public init(_ diagnostics: [Diagnostic]) {
        self.diagnostics = Array(Set(diagnostics)).sorted()
    }

    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// Collects diagnostics while a file is read. A class so that nested readers share one list.
package final class DiagnosticSink {
    package private(set) var items: [Diagnostic] = []
    package init() {}
    package func add(_ location: SourceLocation, _ message: String) { items.append(Diagnostic(location, message)) }
    package var isEmpty: Bool { items.isEmpty }
}

/// A parsed expression. Nodes keep their source offset so that errors can be located.
public final class Expr: @unchecked Sendable {
    public enum Kind {
        case literal(Value)
        case ident(String)
        /// `operand.field`; `testOnly` is the `has()` form.
        case select(Expr, String, testOnly: Bool)
        /// A global call (`size(x)`, `_+_`) or a receiver call (`x.size()`).
        case call(String, target: Expr?, args: [Expr])
        case list([Expr])
        case map([(Expr, Expr)])
        /// A macro over a range: `all`, `exists`, `exists_one`, `map`, `filter`, and the
        /// two-variable forms.
        case comprehension(Comprehension)
    }

    public let kind: Kind
    /// Offset, in Unicode scalars from the start of the expression, of the node's first character.
    public let offset: Int
    /// The node's height in the tree (a leaf is 1). The parser refuses trees taller than its
    /// limit, so that no evaluator, checker or deallocation recursing over them can overflow
    /// the stack, however the height came about: nesting, or long operator, member and index
    /// chains, which parse in a loop but build a tree as deep as they are long.
    public let height: Int

    public init(_ kind: Kind, at offset: Int) {
        self.kind = kind
        self.offset = offset
        switch kind {
        case .literal, .ident: height = 1
        case .select(let e, _, _): height = e.height + 1
        case .call(_, let target, let args): height = max(target?.height ?? 0, args.map(\.height).max() ?? 0) + 1
        case .list(let items): height = (items.map(\.height).max() ?? 0) + 1
        case .map(let entries): height = (entries.map { max($0.0.height, $0.1.height) }.max() ?? 0) + 1
        case .comprehension(let c): height = max(c.range.height, c.predicate?.height ?? 0, c.transform?.height ?? 0) + 1
        }
    }
}

public struct Comprehension: Sendable {
    public enum Op: Sendable {
        case all, exists, existsOne, map, filter
        /// `transformList(i, v, [filter,] f)` and `transformMap(k, v, [filter,] f)`.
        case transformList, transformMap
    }
    public var op: Op
    public var range: Expr
    /// The element variable (for maps, the key); with two variables, the index or key.
    public var first: String
    /// The second variable of the two-variable forms (value), or nil.
    public var second: String?
    /// The predicate (`all`, `exists`, `exists_one`, `filter`) or the optional filter of `map`.
    public var predicate: Expr?
    /// The transform (`map`, `transform*`).
    public var transform: Expr?
}

/// Where an expression failed to parse or check: a message and an offset into the text.
public struct CELError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var offset: Int
    public init(_ message: String, at offset: Int) {
        self.message = message
        self.offset = offset
    }
    public var description: String { message }
}

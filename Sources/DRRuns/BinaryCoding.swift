import CEL
import Foundation

/// Little-endian writing for the repository's binary records (index files, pack trailers,
/// snapshot entries; docs/repository-format.md).
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { for s in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(s))) } }
    mutating func u64(_ v: UInt64) { for s in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(s))) } }
    mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }

    /// A 64-digit hex id as its 32 bytes (ids are always written by drplan as such).
    mutating func id(_ hex: String) {
        var hex = hex
        hex.withUTF8 { utf8 in
            var i = 0
            while i + 1 < utf8.count && i < 64 {
                bytes.append(Self.nibble(utf8[i]) << 4 | Self.nibble(utf8[i + 1]))
                i += 2
            }
            for _ in (i / 2)..<32 { bytes.append(0) }
        }
    }

    private static func nibble(_ c: UInt8) -> UInt8 { (c >= 97 ? c &- 87 : c >= 65 ? c &- 55 : c &- 48) & 0xF }

    mutating func string(_ s: String) {
        let utf8 = Array(s.utf8)
        u32(UInt32(utf8.count))
        bytes += utf8
    }
}

/// The reading side of `ByteWriter`: every read is bounds-checked and returns nil past the
/// end, so a damaged record is reported, never a crash.
struct ByteReader {
    let bytes: [UInt8]
    var at = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - at }

    mutating func take(_ n: Int) -> ArraySlice<UInt8>? {
        guard n >= 0, n <= remaining else { return nil }
        defer { at += n }
        return bytes[at..<at + n]
    }

    mutating func u8() -> UInt8? { take(1)?.first }
    mutating func u32() -> UInt32? { take(4).map { $0.reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) } } }
    mutating func u64() -> UInt64? { take(8).map { $0.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) } } }
    mutating func i64() -> Int64? { u64().map { Int64(bitPattern: $0) } }
    mutating func id() -> String? { take(32).map { JSONWriter.hex($0) } }

    mutating func string() -> String? {
        guard let n = u32(), let raw = take(Int(n)) else { return nil }
        return String(decoding: raw, as: UTF8.self)
    }
}

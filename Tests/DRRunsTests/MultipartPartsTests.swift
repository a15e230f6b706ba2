import Testing
@testable import DRRuns

/// How an object is cut into the parts of a multipart upload.
@Suite("Multipart parts")
struct MultipartPartsTests {
    @Test("parts cover the object exactly, in order, each at least the part size and fewer than two of them")
    func partsCoverTheObject() {
        let p = S3Storage.partSize
        for count in [16 << 20, (16 << 20) + 1, (16 << 20) + (300 << 10), 17 << 20, 24 << 20, (24 << 20) - 1, 40 << 20, 1 << 30, (1 << 30) + 12_345] {
            let ranges = S3Storage.partRanges(count)
            #expect(ranges.first?.lowerBound == 0)
            #expect(ranges.last?.upperBound == count)
            for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(a.upperBound == b.lowerBound) }
            for r in ranges { #expect(r.count >= p && r.count < 2 * p, "\(count): a part of \(r.count) bytes") }
            #expect(ranges.count <= 10_000)   // S3's limit on parts
        }
    }

    @Test("a pack just over 16 MiB goes up in two equal parts, not with a sliver of a third")
    func aPackIsTwoParts() {
        let ranges = S3Storage.partRanges((16 << 20) + (300 << 10))
        #expect(ranges.count == 2)
        #expect(abs(ranges[0].count - ranges[1].count) <= 1)
    }
}

import DRInventory

/// What is lost: a site, a region, ransomware, one asset's corruption, or one storage target.
public enum Scenario: Hashable, Sendable, CustomStringConvertible {
    case site(String)
    case region(String)
    case ransomware
    case asset(String)
    case storage(String)

    public var description: String {
        switch self {
        case .site(let id): return "site:\(id)"
        case .region(let r): return "region:\(r)"
        case .ransomware: return "ransomware"
        case .asset(let id): return "asset:\(id)"
        case .storage(let id): return "storage:\(id)"
        }
    }

    /// Parses `site:ID`, `region:NAME`, `ransomware`, `asset:ID` or `storage:ID`, checking that
    /// the named object exists in `inventory`.
    public static func parse(_ text: String, in inventory: Inventory) throws(ScalarError) -> Scenario {
        if text == "ransomware" { return .ransomware }
        guard let colon = text.firstIndex(of: ":") else {
            throw ScalarError("a scenario is site:ID, region:NAME, ransomware, asset:ID or storage:ID")
        }
        let kind = String(text[..<colon]), name = String(text[text.index(after: colon)...])
        func check(_ ids: [String], _ what: String) throws(ScalarError) {
            guard ids.contains(name) else {
                throw ScalarError("no \(what) '\(name)' in the inventory" + (suggestion(for: name, among: ids).map { " (did you mean '\($0)'?)" } ?? ""))
            }
        }
        switch kind {
        case "site": try check(inventory.sites.map(\.id), "site"); return .site(name)
        case "region":
            try check(Array(Set(inventory.sites.map { $0.region ?? $0.id })).sorted(), "region")
            return .region(name)
        case "asset": try check(inventory.assets.map(\.id), "asset"); return .asset(name)
        case "storage": try check(inventory.storage.map(\.id), "storage"); return .storage(name)
        default:
            throw ScalarError("unknown scenario kind '\(kind)'; use site:, region:, ransomware, asset: or storage:")
        }
    }

    /// With no `--scenario`: ransomware, then the loss of each site that holds a primary.
    public static func defaults(for inventory: Inventory) -> [Scenario] {
        var sites: [String] = []
        for a in inventory.assets where !sites.contains(a.site) { sites.append(a.site) }
        return [.ransomware] + sites.map(Scenario.site)
    }
}

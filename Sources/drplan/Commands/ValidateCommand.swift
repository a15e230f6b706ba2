import ArgumentParser
import DRInventory

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Load and validate the inventory; report every problem with its file, line and column.",
        discussion: """
            Example:
              drplan validate -i samples/small-office.yaml

            Prints 'ok: N sites, N storage, N assets, N jobs, N restore tests' and exits 0,
            or prints each problem as FILE:LINE:COL: error: … on stderr and exits 2.
            """)

    @OptionGroup var global: GlobalOptions

    func run() throws {
        global.apply()
        let inv = try global.loadInventory()
        if !global.quiet {
            Console.out("ok: \(inv.sites.count) sites, \(inv.storage.count) storage, \(inv.assets.count) assets, \(inv.jobs.count) jobs, \(inv.restoreTests.count) restore tests")
        }
    }
}

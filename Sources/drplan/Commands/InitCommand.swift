import ArgumentParser
import DRInventory
import Foundation

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a commented starter drplan.yaml (never overwrites one).",
        discussion: """
            Example:
              drplan init my-dr && drplan validate -i my-dr/drplan.yaml
              drplan init --recipe small-office office-backup
            """)

    @Argument(help: ArgumentHelp("Directory to write drplan.yaml into; created if missing.", valueName: "dir"))
    var directory: String = "."

    @Option(name: .long, help: ArgumentHelp("Write a complete recipe instead of the starter: " + Recipes.all.map { "\($0.name) (\($0.summary))" }.joined(separator: "; "), valueName: "name"))
    var recipe: String?

    @OptionGroup var global: GlobalOptions

    func validate() throws {
        if let recipe, Recipes.text(recipe) == nil {
            throw ValidationError("unknown recipe '\(recipe)'; known: \(Recipes.all.map(\.name).joined(separator: ", "))")
        }
    }

    func run() throws {
        global.apply()
        let path = (directory as NSString).appendingPathComponent(StarterInventory.fileName)
        let fm = FileManager.default
        if fm.fileExists(atPath: path) {
            Console.error("drplan: error: '\(path)' already exists; drplan init never overwrites an inventory. Choose another directory or remove the file")
            throw CommandFailure(status: .badInput)
        }
        do {
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
            // withoutOverwriting: a file created between the check above and now is not clobbered.
            try Data((recipe.flatMap(Recipes.text) ?? StarterInventory.text).utf8).write(to: URL(fileURLWithPath: path), options: .withoutOverwriting)
        } catch {
            Console.error("drplan: error: cannot write '\(path)': \(error.localizedDescription)")
            throw CommandFailure(status: .badInput)
        }
        if !global.quiet { Console.out("wrote \(path); check it with: drplan validate -i \(path)") }
    }
}

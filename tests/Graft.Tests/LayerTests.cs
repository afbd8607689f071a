using System.Xml.Linq;

namespace Graft.Tests;

/// <summary>
/// The layers are a one-way street (docs/architecture.md): a project references only projects of a lower layer, never a
/// sibling of its own layer nor anything above it. Checked on the project files themselves, so a new reference that
/// breaks the rule fails here before it is used.
/// </summary>
public sealed class LayerTests
{
    /// <summary>
    /// Each project's layer. A project may reference only projects of a strictly lower layer. A new project gets a line
    /// here (and in docs/architecture.md) before it builds in CI.
    /// </summary>
    private static readonly Dictionary<string, int> Layers = new(StringComparer.Ordinal)
    {
        ["Graft.Tensors"] = 0,
        ["Graft.Models"] = 1,
        ["Graft.Plugins"] = 2,
        ["Graft.Data"] = 2,
        ["Graft.Training"] = 3,
        ["Graft.Eval"] = 3,
        ["Graft.Serving"] = 3,
        ["Graft.Import"] = 3,
        ["Graft.Demo"] = 4,
        ["Graft.Benchmarking"] = 4,
        ["Graft.Cli"] = 5,
        ["Graft.Bench"] = 5,
        ["Graft.Peers"] = 5,
    };

    private static string RepositoryRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
            if (File.Exists(Path.Combine(folder.FullName, "Graft.sln"))) return folder.FullName;
        throw new DirectoryNotFoundException($"no Graft.sln above {AppContext.BaseDirectory}");
    }

    private static List<string> ProjectFiles(string root) =>
        ((string[])["src", "bench"]).Select(f => Path.Combine(root, f)).Where(Directory.Exists)
            .SelectMany(f => Directory.GetFiles(f, "*.csproj", SearchOption.AllDirectories))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Order(StringComparer.Ordinal).ToList();

    private static IEnumerable<string> References(string project) =>
        XDocument.Load(project).Descendants().Where(e => e.Name.LocalName == "ProjectReference")
            .Select(e => Path.GetFileNameWithoutExtension(((string?)e.Attribute("Include") ?? "").Replace('\\', '/')));

    /// <summary>What breaks the rule in a graph of project name to the projects it references.</summary>
    private static List<string> Problems(IEnumerable<(string Project, IEnumerable<string> References)> graph)
    {
        var problems = new List<string>();
        foreach (var (name, references) in graph)
        {
            if (!Layers.TryGetValue(name, out int layer))
            {
                problems.Add($"{name} has no layer: add it to LayerTests.Layers and docs/architecture.md");
                continue;
            }
            foreach (var reference in references)
            {
                if (!Layers.TryGetValue(reference, out int referenced)) problems.Add($"{name} references {reference}, which has no layer");
                else if (referenced >= layer)
                    problems.Add($"{name} (layer {layer}) references {reference} (layer {referenced}): {(referenced == layer ? "a sibling" : "a layer above it")}");
            }
        }
        return problems;
    }

    [Fact]
    public void EveryProjectReferencesOnlyLowerLayers()
    {
        var projects = ProjectFiles(RepositoryRoot());
        Assert.Contains(projects, p => Path.GetFileNameWithoutExtension(p) == "Graft.Tensors");
        Assert.Contains(projects, p => Path.GetFileNameWithoutExtension(p) == "Graft.Cli");
        var problems = Problems(projects.Select(p => (Path.GetFileNameWithoutExtension(p), References(p))));
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void TheRuleRefusesSiblingsUpwardReferencesAndUnknownProjects()
    {
        var problems = Problems([
            ("Graft.Eval", ["Graft.Plugins", "Graft.Data", "Graft.Training"]),
            ("Graft.Models", ["Graft.Tensors", "Graft.Plugins"]),
            ("Graft.Data", ["Graft.Plugins"]),
            ("Graft.Cli", ["Graft.Demo", "Graft.Serving"]),
            ("Graft.Newcomer", ["Graft.Tensors"]),
        ]);
        Assert.Equal(
        [
            "Graft.Eval (layer 3) references Graft.Training (layer 3): a sibling",
            "Graft.Models (layer 1) references Graft.Plugins (layer 2): a layer above it",
            "Graft.Data (layer 2) references Graft.Plugins (layer 2): a sibling",
            "Graft.Newcomer has no layer: add it to LayerTests.Layers and docs/architecture.md",
        ], problems);
    }

    [Fact]
    public void ArchitectureDocumentNamesEveryProject()
    {
        string root = RepositoryRoot();
        string text = File.ReadAllText(Path.Combine(root, "docs", "architecture.md"));
        foreach (var project in ProjectFiles(root).Select(Path.GetFileNameWithoutExtension))
            Assert.True(text.Contains(project!, StringComparison.Ordinal), $"docs/architecture.md does not name {project}");
    }
}

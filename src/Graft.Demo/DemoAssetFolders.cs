using System.Text.Json;
using Graft.Data;

namespace Graft.Demo;

/// <summary>
/// The demo's committed assets (see assets/demo/README.md): base/ (a Qwen2 folder with its tokenizer), vision/ (a CLIP
/// vision folder), text-tests/ (the base's text test sets: free/NAME.json, LLaVA files of free questions, and
/// choice/NAME, MMLU folders) and assets.json, from which the demo takes the shapes world's parameters so its scenes
/// look like the ones the tower was trained on.
/// </summary>
public sealed record DemoAssetFolders(
    string Root, string Base, string Vision, IReadOnlyList<(string Name, string File)> FreeTests, IReadOnlyList<(string Name, string Folder)> ChoiceTests,
    ShapesWorldOptions Shapes)
{
    public const string ManifestFileName = "assets.json";

    /// <summary>Where the demo looks by default: beside the executable (copied there by the build), else the repository's assets/demo.</summary>
    public static string DefaultRoot()
    {
        string beside = Path.Combine(AppContext.BaseDirectory, "assets", "demo");
        if (File.Exists(Path.Combine(beside, ManifestFileName))) return beside;
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
        {
            string candidate = Path.Combine(folder.FullName, "assets", "demo");
            if (File.Exists(Path.Combine(candidate, ManifestFileName))) return candidate;
        }
        return beside;
    }

    public static DemoAssetFolders Open(string root)
    {
        string manifest = Path.Combine(root, ManifestFileName);
        if (!File.Exists(manifest))
            throw new FileNotFoundException($"no demo assets in {root} ({ManifestFileName} is missing); build them with graft demo --rebuild-assets --assets {root}", manifest);
        using var document = ParseManifest(manifest);
        var world = Property(document.RootElement, "world", manifest, "world");
        var shapes = new ShapesWorldOptions
        {
            Size = Property(world, "image_size", manifest, "world.image_size").GetInt32(),
            MaxShapes = Property(world, "max_shapes", manifest, "world.max_shapes").GetInt32(),
        };
        string baseFolder = Path.Combine(root, "base"), vision = Path.Combine(root, "vision"), tests = Path.Combine(root, "text-tests");
        foreach (var folder in (string[])[baseFolder, vision, tests])
            if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"demo assets in {root}: the folder {Path.GetFileName(folder)}/ is missing");
        string free = Path.Combine(tests, DemoTextWorld.FreeFolder), choice = Path.Combine(tests, DemoTextWorld.ChoiceFolder);
        var freeTests = Directory.Exists(free)
            ? Directory.GetFiles(free, "*.json").Order(StringComparer.Ordinal).Select(f => (Path.GetFileNameWithoutExtension(f), f)).ToList() : [];
        var choiceTests = Directory.Exists(choice)
            ? Directory.GetDirectories(choice).Order(StringComparer.Ordinal).Select(f => (Path.GetFileName(f), f)).ToList() : [];
        if (freeTests.Count == 0) throw new DirectoryNotFoundException($"demo assets in {root}: text-tests/{DemoTextWorld.FreeFolder}/ holds no test set");
        if (choiceTests.Count == 0) throw new DirectoryNotFoundException($"demo assets in {root}: text-tests/{DemoTextWorld.ChoiceFolder}/ holds no test set");
        return new DemoAssetFolders(root, baseFolder, vision, freeTests, choiceTests, shapes);
    }

    private static JsonDocument ParseManifest(string path)
    {
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON at line {e.LineNumber + 1}: {e.Message}", e);
        }
    }

    private static JsonElement Property(JsonElement parent, string name, string file, string field)
    {
        if (parent.ValueKind == JsonValueKind.Object && parent.TryGetProperty(name, out var value)
            && (value.ValueKind == JsonValueKind.Object || value.TryGetInt32(out _))) return value;
        throw new InvalidDataException($"{file}: field \"{field}\" is missing or not {(name == "world" ? "an object" : "an integer")}");
    }
}

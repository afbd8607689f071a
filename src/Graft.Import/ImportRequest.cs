namespace Graft.Import;

/// <summary>What <see cref="Importer.Import"/> converts, and where to.</summary>
public sealed record ImportRequest
{
    /// <summary>The author's checkpoint: a folder as published (or one file, such as mm_projector.bin).</summary>
    public required string Source { get; init; }

    /// <summary>The folder to write: base/, vision/ (where the design has a tower), NAME.graft/ and import.json.</summary>
    public required string Output { get; init; }

    /// <summary>A layout name (<see cref="Importer.Layouts"/>) to use instead of detecting it from the files.</summary>
    public string? Format { get; init; }

    /// <summary>The base the authors started from, for releases that hold only their plug-in (LLaVA's mm_projector.bin).</summary>
    public string? Base { get; init; }

    /// <summary>The vision tower the authors' code loads by name (LLaVA's mm_vision_tower), as a downloaded folder.</summary>
    public string? Vision { get; init; }

    /// <summary>The plug-in's name (NAME.graft); by default the source folder's name.</summary>
    public string? Name { get; init; }

    /// <summary>Replace an output folder Graft did not write.</summary>
    public bool Overwrite { get; init; }

    /// <summary>Told each tensor as it is written (done, total, name).</summary>
    public Action<ImportProgress>? Progress { get; init; }
}

/// <summary>One step of an import: tensors written so far of all, and the one just written.</summary>
public sealed record ImportProgress(int Done, int Total, string Part, string Tensor, long Bytes);

/// <summary>What an import wrote and what it found.</summary>
public sealed record ImportResult(string Layout, string Output, string BaseFolder, string? VisionFolder, string PluginFolder, bool BaseChanged, IReadOnlyList<string> Notes);

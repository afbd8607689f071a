using System.Diagnostics;
using System.Text.Json;
using Graft.Data;
using Graft.Models;
using Graft.Models.Chat;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Vision;
using Graft.Training;
using Graft.Training.Tokenization;

namespace Graft.Demo;

/// <summary>The sizes and schedules of <see cref="DemoAssets.Build"/>; the defaults make the committed assets.</summary>
public sealed record DemoAssetsOptions
{
    public DemoWorldParameters World { get; init; } = new() { Shapes = new ShapesWorldOptions { MaxShapes = 1 } };

    /// <summary>Training documents the tokenizer is learned from, and its vocabulary (an upper bound: merges stop when pairs run out).</summary>
    public int TokenizerDocuments { get; init; } = 4000;
    public int VocabSize { get; init; } = 1024;

    /// <summary>The base: a Qwen2 decoder (GQA, q/k/v biases, tied embedding) of these sizes.</summary>
    public int HiddenSize { get; init; } = 128;
    public int Layers { get; init; } = 4;
    public int Heads { get; init; } = 4;
    public int KeyValueHeads { get; init; } = 2;
    public int IntermediateSize { get; init; } = 384;
    public int ContextLength { get; init; } = 256;
    public int BaseBatchSize { get; init; } = 8;
    public PretrainingSchedule BaseSchedule { get; init; } = new() { Steps = 2000, LearningRate = 2e-3f, MinLearningRate = 2e-4f, WarmupSteps = 50, WeightDecay = 0.1f, ReportEvery = 25 };

    /// <summary>The vision tower: a CLIP ViT over the shapes world's images.</summary>
    public int VisionWidth { get; init; } = 64;
    public int VisionLayers { get; init; } = 4;
    public int VisionHeads { get; init; } = 4;
    public int PatchSize { get; init; } = 8;
    public int VisionBatchSize { get; init; } = 32;
    public PretrainingSchedule VisionSchedule { get; init; } = new() { Steps = 1000, LearningRate = 3e-3f, MinLearningRate = 3e-4f, WarmupSteps = 50, WeightDecay = 0.05f, ReportEvery = 50 };
    public int EvaluationScenes { get; init; } = 500;

    /// <summary>Whether the finished base is scored on the text test sets (<see cref="TextTestEvaluation"/>); without it, assets.json records no text accuracy.</summary>
    public bool ScoreText { get; init; } = true;
}

/// <summary>Correct answers of one text test set: by free answer ("free", shots 0), or by answer letter ("letter") at a number of few-shot examples.</summary>
public sealed record TextTestScore(string Set, string Method, int Shots, int Correct, int Total)
{
    public const string LetterMethod = "letter";
    public const string FreeMethod = "free";

    public double Accuracy => Total > 0 ? (double)Correct / Total : double.NaN;
}

/// <summary>A line of progress from a build: the stage, a message, and the training step when there is one.</summary>
public sealed record DemoAssetsProgress(string Stage, string Message, PretrainingProgress? Training = null);

/// <summary>What a build made and measured, as assets.json records it.</summary>
public sealed record DemoAssetsReport(
    int Seed, DemoWorldParameters World, int VocabSize, long BaseParameters, long VisionParameters,
    PretrainingResult BaseTraining, ShapesVisionResult VisionTraining, IReadOnlyList<TextTestScore> TextScores,
    IReadOnlyDictionary<string, TimeSpan> Times, TimeSpan Total);

/// <summary>
/// The demo's own base language model and vision encoder, made from nothing by Graft's code: a byte-level BPE
/// tokenizer learned from the demo's text world, a small Qwen2 decoder pre-trained on it, and a small CLIP tower
/// trained on shapes scenes. <see cref="Build"/> writes FOLDER/base (a Hugging Face Qwen2 folder with its tokenizer),
/// FOLDER/vision (a CLIPVisionModel folder), FOLDER/text-tests (the text test sets: free answers and MMLU folders) and
/// FOLDER/assets.json (seeds, sizes, world parameters, times, accuracies), all at once or not at all.
/// </summary>
public static class DemoAssets
{
    public const string ManifestFileName = "assets.json";
    public const string BaseFolderName = "base";
    public const string VisionFolderName = "vision";
    public const string TextTestsFolderName = "text-tests";

    /// <summary>The seeds of each part, derived from the build's one seed so every part has its own stream.</summary>
    public static (ulong World, ulong TokenizerSample, ulong BaseData, int BaseInit, int VisionInit, ulong VisionData) Seeds(int seed) =>
        ((ulong)seed, (ulong)seed + 101, (ulong)seed + 202, seed + 303, seed + 404, (ulong)seed + 505);

    /// <summary>
    /// Builds the assets into <paramref name="folder"/> (replacing an earlier build; refusing a folder Graft did not
    /// write). Cancellation stops at a training step and leaves the folder as it was.
    /// </summary>
    public static DemoAssetsReport Build(string folder, int seed, IProgress<DemoAssetsProgress>? progress, CancellationToken cancellationToken,
        DemoAssetsOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        options ??= new DemoAssetsOptions();
        var seeds = Seeds(seed);
        var world = new DemoTextWorld(options.World with { Seed = seeds.World });
        var times = new Dictionary<string, TimeSpan>();
        var total = Stopwatch.StartNew();
        var clock = Stopwatch.StartNew();
        var training = progress is null ? null : new Progress(progress);
        using var output = CheckpointFolder.Begin(folder, "demo_assets");

        progress?.Report(new("tokenizer", $"learning a byte-level BPE vocabulary of at most {options.VocabSize} from {options.TokenizerDocuments} documents"));
        var sample = new SeededRandom(seeds.TokenizerSample);
        var tokenizerFiles = ByteLevelBpeTrainer.Train(Enumerable.Range(0, options.TokenizerDocuments).Select(_ => world.NextDocument(sample)).ToList(),
            new BpeTrainingOptions
            {
                VocabSize = options.VocabSize, ModelMaxLength = options.ContextLength,
                // A base with no chat training: its conversations are the plain transcript, each answer ended by the
                // document separator it learned (as Qwen's base models end with <|endoftext|>).
                ChatTemplate = PlainChatTemplate.Jinja, EosToken = "<|endoftext|>",
            });
        var tokenizer = tokenizerFiles.Load();
        times["tokenizer"] = Lap(clock);
        progress?.Report(new("tokenizer", $"{tokenizer.VocabSize} tokens ({tokenizerFiles.Merges.Count} merges) in {times["tokenizer"].TotalSeconds:F1} s"));

        var config = BaseConfig(options, tokenizer.VocabSize, tokenizer.TokenToId("<|im_end|>")!.Value, tokenizer.TokenToId("<|endoftext|>")!.Value);
        var weights = DecoderWeights.CreateRandom(config, seeds.BaseInit);
        var model = DecoderModel.FromWeights(config, weights);
        long baseParameters = model.ParameterCount;
        progress?.Report(new("base", $"pre-training a {baseParameters:N0}-parameter Qwen2 decoder for {options.BaseSchedule.Steps} steps of {options.BaseBatchSize}x{options.ContextLength} tokens"));
        var data = new SeededRandom(seeds.BaseData);
        int separator = tokenizer.TokenToId("<|endoftext|>")!.Value;
        var rows = new PackedSequences(() => tokenizer.Encode(world.NextDocument(data)), separator);
        var baseTraining = LanguageModelPretraining.Run(model, rows, options.BaseSchedule, options.BaseBatchSize, options.ContextLength, training, cancellationToken);
        string baseFolder = output.PathOf(BaseFolderName);
        DecoderCheckpointWriter.Save(baseFolder, config, weights, new DecoderCheckpointOptions { TokenizerFiles = tokenizerFiles.Files });
        world.WriteTestSets(new DataOutput(output.PathOf(TextTestsFolderName), force: false, []));
        times["base"] = Lap(clock);

        var visionConfig = new VisionTowerConfig(VisionTowerKind.Clip, options.World.Shapes.Size, options.PatchSize, 3, options.VisionWidth, 4 * options.VisionWidth,
            options.VisionLayers, options.VisionHeads, VisionActivation.QuickGelu, 1e-5f);
        var preprocessing = ImageProcessorConfig.Clip() with { ShortestEdge = visionConfig.ImageSize, CropHeight = visionConfig.ImageSize, CropWidth = visionConfig.ImageSize };
        var tower = ClipVisionModel.CreateRandom(visionConfig, seeds.VisionInit);
        long visionParameters = tower.Parameters.Sum(p => (long)p.Length);
        progress?.Report(new("vision", $"training a {visionParameters:N0}-parameter CLIP tower for {options.VisionSchedule.Steps} steps of {options.VisionBatchSize} scenes"));
        var visionTraining = ShapesVisionPretraining.Run(tower, preprocessing, options.World.Shapes, seeds.VisionData, options.VisionSchedule, options.VisionBatchSize,
            options.EvaluationScenes, training, cancellationToken);
        ClipCheckpointWriter.Save(output.PathOf(VisionFolderName), tower, preprocessing);
        times["vision"] = Lap(clock);
        var accuracy = visionTraining.Accuracy;
        progress?.Report(new("vision", $"held-out head accuracy: shape {accuracy.Shape:P1}, colour {accuracy.Colour:P1}, occupancy {accuracy.Occupancy:P1}, count {accuracy.Count:P1}"));

        IReadOnlyList<TextTestScore> scores = [];
        if (options.ScoreText)
        {
            progress?.Report(new("evaluation", "scoring the base on the text test sets"));
            scores = TextTestEvaluation.Score(baseFolder, output.PathOf(TextTestsFolderName), cancellationToken: cancellationToken);
            times["evaluation"] = Lap(clock);
            foreach (var score in scores)
                progress?.Report(new("evaluation", $"{score.Set} ({(score.Method == TextTestScore.FreeMethod ? "free answers" : $"letters, {score.Shots}-shot")}): {score.Accuracy:P1} ({score.Correct}/{score.Total})"));
        }

        var report = new DemoAssetsReport(seed, world.Parameters, tokenizer.VocabSize, baseParameters, visionParameters, baseTraining, visionTraining, scores, times, total.Elapsed);
        output.WriteJson(ManifestFileName, w => WriteManifest(w, report, options, tokenizerFiles.Merges.Count, visionConfig));
        cancellationToken.ThrowIfCancellationRequested();
        output.Commit();
        return report;
    }

    /// <summary>The base's config: Qwen2 with the given sizes, rope θ 10⁴, ε 10⁻⁶, EOS the end of a chat turn (and of a document).</summary>
    public static LlmConfig BaseConfig(DemoAssetsOptions options, int vocabSize, int imEnd, int endOfText) => new()
    {
        Family = LlmFamily.Qwen2,
        Architecture = "Qwen2ForCausalLM",
        VocabSize = vocabSize,
        HiddenSize = options.HiddenSize,
        IntermediateSize = options.IntermediateSize,
        NumLayers = options.Layers,
        NumHeads = options.Heads,
        NumKeyValueHeads = options.KeyValueHeads,
        HeadDim = options.HiddenSize / options.Heads,
        RmsNormEps = 1e-6f,
        RopeTheta = 10000,
        RopeScaling = RopeScaling.None,
        MaxPositionEmbeddings = options.ContextLength,
        TieWordEmbeddings = true,
        QkvBias = true,
        OutputBias = false,
        MlpBias = false,
        BosTokenIds = [],
        EosTokenIds = [imEnd, endOfText],
        TorchDType = "float32",
    };

    private static TimeSpan Lap(Stopwatch clock)
    {
        var elapsed = clock.Elapsed;
        clock.Restart();
        return elapsed;
    }

    /// <summary>Training steps reported as build progress.</summary>
    private sealed class Progress(IProgress<DemoAssetsProgress> target) : IProgress<PretrainingProgress>
    {
        public void Report(PretrainingProgress value) => target.Report(new(value.Stage,
            $"step {value.Step}/{value.Steps}  loss {value.MeanLoss:F3}  {value.ItemsPerSecond:F0} {(value.Stage == "vision" ? "images" : "tokens")}/s  eta {value.Remaining:mm\\:ss}", value));
    }

    private static void WriteManifest(Utf8JsonWriter w, DemoAssetsReport report, DemoAssetsOptions options, int merges, VisionTowerConfig vision)
    {
        var seeds = Seeds(report.Seed);
        var world = report.World;
        w.WriteStartObject();
        w.WriteNumber("format", 1);
        w.WriteNumber("seed", report.Seed);
        w.WriteStartObject("world");
        w.WriteNumber("seed", world.Seed);
        w.WriteNumber("cities", world.Cities);
        w.WriteNumber("image_size", world.Shapes.Size);
        w.WriteNumber("max_shapes", world.Shapes.MaxShapes);
        w.WriteEndObject();

        w.WriteStartObject("tokenizer");
        w.WriteNumber("sample_seed", seeds.TokenizerSample);
        w.WriteNumber("documents", options.TokenizerDocuments);
        w.WriteNumber("vocab_size", report.VocabSize);
        w.WriteNumber("merges", merges);
        w.WriteEndObject();

        w.WriteStartObject("base");
        w.WriteString("folder", BaseFolderName);
        w.WriteString("architecture", "Qwen2ForCausalLM");
        w.WriteNumber("parameters", report.BaseParameters);
        w.WriteNumber("hidden_size", options.HiddenSize);
        w.WriteNumber("layers", options.Layers);
        w.WriteNumber("heads", options.Heads);
        w.WriteNumber("key_value_heads", options.KeyValueHeads);
        w.WriteNumber("intermediate_size", options.IntermediateSize);
        w.WriteNumber("context_length", options.ContextLength);
        w.WriteNumber("init_seed", seeds.BaseInit);
        w.WriteNumber("data_seed", seeds.BaseData);
        WriteSchedule(w, options.BaseSchedule, options.BaseBatchSize);
        w.WriteStartObject("document_mix");
        foreach (var (kind, weight) in DemoTextWorld.DocumentMix) w.WriteNumber(kind, weight);
        w.WriteEndObject();
        WriteRun(w, report.BaseTraining, "tokens", report.Times["base"]);
        w.WriteEndObject();

        w.WriteStartObject("vision");
        w.WriteString("folder", VisionFolderName);
        w.WriteString("architecture", "CLIPVisionModel");
        w.WriteNumber("parameters", report.VisionParameters);
        w.WriteNumber("image_size", vision.ImageSize);
        w.WriteNumber("patch_size", vision.PatchSize);
        w.WriteNumber("width", vision.Width);
        w.WriteNumber("layers", vision.Layers);
        w.WriteNumber("heads", vision.Heads);
        w.WriteNumber("init_seed", seeds.VisionInit);
        w.WriteNumber("data_seed", seeds.VisionData);
        WriteSchedule(w, options.VisionSchedule, options.VisionBatchSize);
        WriteRun(w, report.VisionTraining.Training, "images", report.Times["vision"]);
        var accuracy = report.VisionTraining.Accuracy;
        w.WriteStartObject("head_accuracy");
        w.WriteNumber("scenes", accuracy.Scenes);
        w.WriteNumber("shape", Math.Round(accuracy.Shape, 4));
        w.WriteNumber("colour", Math.Round(accuracy.Colour, 4));
        w.WriteNumber("occupancy", Math.Round(accuracy.Occupancy, 4));
        w.WriteNumber("count", Math.Round(accuracy.Count, 4));
        w.WriteEndObject();
        w.WriteEndObject();

        w.WriteString("text_tests", TextTestsFolderName);
        w.WriteStartArray("text_accuracy");
        foreach (var score in report.TextScores)
        {
            w.WriteStartObject();
            w.WriteString("set", score.Set);
            w.WriteString("method", score.Method);
            w.WriteNumber("shots", score.Shots);
            w.WriteNumber("correct", score.Correct);
            w.WriteNumber("total", score.Total);
            w.WriteNumber("accuracy", Math.Round(score.Accuracy, 4));
            w.WriteEndObject();
        }
        w.WriteEndArray();

        w.WriteStartObject("seconds");
        foreach (var (part, time) in report.Times) w.WriteNumber(part, Math.Round(time.TotalSeconds, 1));
        w.WriteNumber("total", Math.Round(report.Total.TotalSeconds, 1));
        w.WriteEndObject();
        w.WriteStartObject("machine");
        w.WriteNumber("processors", Environment.ProcessorCount);
        if (LoadAverage() is { } load) w.WriteString("load_average_at_end", load);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WriteSchedule(Utf8JsonWriter w, PretrainingSchedule schedule, int batchSize)
    {
        w.WriteNumber("steps", schedule.Steps);
        w.WriteNumber("batch_size", batchSize);
        w.WriteNumber("learning_rate", schedule.LearningRate);
        w.WriteNumber("min_learning_rate", schedule.MinLearningRate);
        w.WriteNumber("warmup_steps", schedule.WarmupSteps);
        w.WriteNumber("weight_decay", schedule.WeightDecay);
        w.WriteNumber("gradient_clip", schedule.GradientClip);
    }

    private static void WriteRun(Utf8JsonWriter w, PretrainingResult run, string items, TimeSpan time)
    {
        w.WriteNumber(items, run.Items);
        w.WriteNumber("final_loss", Math.Round(run.FinalLoss, 4));
        w.WriteNumber("training_seconds", Math.Round(run.Elapsed.TotalSeconds, 1));
        w.WriteNumber("seconds", Math.Round(time.TotalSeconds, 1));
    }

    /// <summary>The 1, 5 and 15-minute load averages where the system reports them (Linux), to read the times against.</summary>
    private static string? LoadAverage()
    {
        const string path = "/proc/loadavg";
        if (!File.Exists(path)) return null;
        var fields = File.ReadAllText(path).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return fields.Length >= 3 ? string.Join(" ", fields.Take(3)) : null;
    }

    /// <summary>Reads the world parameters an assets folder was built with, so the demo regenerates the same worlds.</summary>
    public static DemoWorldParameters ReadWorld(string folder)
    {
        string path = Path.Combine(folder, ManifestFileName);
        if (!File.Exists(path)) throw new FileNotFoundException($"{folder} has no {ManifestFileName}; rebuild the assets with `graft demo --rebuild-assets`", path);
        using var document = JsonFiles.ParseFile(path);
        var root = JsonRecord.Object(path, "top level", document.RootElement);
        if (root.Int("format") != 1) throw root.Error($"format {root.Int("format")} is not one this build reads (1)");
        var world = JsonRecord.Object(path, "world", root.Required("world"));
        var seed = world.Required("seed");
        return new DemoWorldParameters
        {
            Seed = seed.ValueKind == JsonValueKind.Number && seed.TryGetUInt64(out ulong value) ? value : throw world.Error($"seed {seed} is not a whole number"),
            Cities = world.Int("cities"),
            Shapes = new ShapesWorldOptions { Size = world.Int("image_size"), MaxShapes = world.Int("max_shapes") },
        };
    }
}

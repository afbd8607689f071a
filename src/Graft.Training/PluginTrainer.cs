using System.Diagnostics;
using System.Text.Json.Nodes;
using Graft.Data;
using Graft.Models.Chat;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Models.Tokenization;
using Graft.Plugins;
using Graft.Tensors;
using Graft.Tensors.Optim;
using Graft.Tensors.SafeTensors;

namespace Graft.Training;

/// <summary>
/// What to train: a recipe, the frozen base and the vision front end the plug-in reads (none for Visual Experts), the
/// run folder, and overrides of the recipe's data sources, seed and total step budget. The tokenizer defaults to the
/// base folder's.
/// </summary>
public sealed record TrainingRequest
{
    public required Recipe Recipe { get; init; }
    public required DecoderModel Base { get; init; }
    public IVisionFrontEnd? Vision { get; init; }
    public Tokenizer? Tokenizer { get; init; }
    public required string RunFolder { get; init; }

    /// <summary>Replaces the data sources of the recipe and of every stage.</summary>
    public IReadOnlyList<DataSourceSpec>? Data { get; init; }

    /// <summary>Replaces the recipe's seed (the plug-in's initialisation, data order and dropout).</summary>
    public int? Seed { get; init; }

    /// <summary>Total optimiser steps, shared out over the stages in proportion to the recipe's.</summary>
    public int? Steps { get; init; }

    /// <summary>Continue the run in <see cref="RunFolder"/> from its last checkpoint.</summary>
    public bool Resume { get; init; }

    /// <summary>The chat template conversations are trained in, instead of the recipe's (<see cref="Recipe.ChatTemplate"/>) or the base's own.</summary>
    public ChatTemplate? ChatTemplate { get; init; }
}

/// <summary>
/// run.json in a run folder: the base folder and the front end (as `--vision` names it) the run was started with, for a
/// resume that is given the run folder alone.
/// </summary>
public sealed record RunInfo(string? Base, string? Vision, string? RecipeOrigin = null)
{
    public string ToJson() => new JsonObject { ["base"] = Base, ["vision"] = Vision, ["recipe_origin"] = RecipeOrigin }
        .ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });

    /// <summary>The run.json of <paramref name="runFolder"/>, or null when it has none (a run started before it was written).</summary>
    public static RunInfo? Read(string runFolder)
    {
        string path = Path.Combine(runFolder, PluginTrainer.RunFileName);
        if (!File.Exists(path)) return null;
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(File.ReadAllText(path));
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new InvalidDataException($"{path}: is not valid JSON: {e.Message}", e);
        }
        if (node is not JsonObject o) throw new InvalidDataException($"{path}: is not a JSON object");
        string? Field(string name) => o[name] switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out string? text) => text,
            _ => throw new InvalidDataException($"{path}: {name}: must be a string or null"),
        };
        return new RunInfo(Field("base"), Field("vision"), Field("recipe_origin"));
    }
}

/// <summary>
/// Trains a plug-in by a recipe. Stages run in order; each trains the tensors its selector names with AdamW (decay off
/// for biases, norms, 1-D tensors and embedding tables), a linear warm-up then a cosine to the stage's floor, gradient
/// clipping by global norm, and batch_size x gradient_accumulation examples per optimiser step. The loss of a step is the
/// mean cross-entropy over the target (assistant) tokens of all its examples: each example's summed loss is
/// back-propagated and the gradients are divided by the step's target count. Examples longer than max_length are
/// shortened or skipped, and counted.
/// </summary>
/// <remarks>
/// Determinism: the plug-in's initialisation, the data order (<see cref="ExampleStream"/>) and MMA's dropout masks
/// (seeded per example from the recipe's seed and the step) depend on the seed alone, so two runs with the same inputs
/// give bit-identical plug-ins, and a run resumed from a checkpoint ends bit-identical to an uninterrupted one.
/// The run folder holds recipe.json (the recipe as run: overrides applied, epochs resolved to steps), metrics.jsonl (one
/// line per step), checkpoints/ (every checkpoint_every steps, at the end of each stage, and when cancelled) and the
/// finished NAME.graft, whose plugin.json records how it was trained. The base is only read; images seen through a
/// frozen front end are encoded once and their features reused.
/// </remarks>
public static class PluginTrainer
{
    public const string RecipeFileName = "recipe.json";
    public const string MetricsFileName = "metrics.jsonl";

    /// <summary>Where a run's base and front end came from (<see cref="RunInfo"/>), so `graft train --out RUN --resume` needs nothing else.</summary>
    public const string RunFileName = "run.json";

    public static TrainingResult Train(TrainingRequest request, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        return new Run(request, progress, cancellationToken).Execute();
    }

    /// <summary>
    /// Step counts for <paramref name="total"/> steps over stages that the recipe gives <paramref name="recipeSteps"/>:
    /// in proportion, largest remainders first, at least one each.
    /// </summary>
    public static int[] ShareSteps(int total, IReadOnlyList<int> recipeSteps)
    {
        ArgumentNullException.ThrowIfNull(recipeSteps);
        if (total < recipeSteps.Count) throw new ArgumentException($"{total} steps cannot cover the recipe's {recipeSteps.Count} stages (at least one step each)");
        long sum = recipeSteps.Sum(s => (long)s);
        var shares = recipeSteps.Select(s => (double)total * s / sum).ToArray();
        var steps = shares.Select(s => Math.Max(1, (int)Math.Floor(s))).ToArray();
        foreach (int i in Enumerable.Range(0, steps.Length).OrderByDescending(i => shares[i] - Math.Floor(shares[i])).ThenBy(i => i))
        {
            if (steps.Sum() >= total) break;
            steps[i]++;
        }
        while (steps.Sum() > total) steps[Array.IndexOf(steps, steps.Max())]--;
        return steps;
    }

    private sealed class Run
    {
        private readonly TrainingRequest _request;
        private readonly IProgress<TrainingProgress>? _progress;
        private readonly CancellationToken _cancellation;
        private readonly Stopwatch _clock = new();
        private readonly Dictionary<string, ImagePart> _images = new(StringComparer.Ordinal);
        private Recipe _recipe;
        private IPlugin _plugin = null!;
        private bool _cacheFeatures;

        /// <summary>The decoder the plug-in runs on: the frozen base, or in Bridge's full mode a trainable F32 copy of it.</summary>
        private DecoderModel _model = null!;

        /// <summary>Bridge's full mode: the copy's tensors, named as its checkpoint names them (empty for a plug-in).</summary>
        private IReadOnlyList<PluginParameter> _baseParameters = [];

        /// <summary>Every trainable tensor's name, for the optimiser's state.</summary>
        private Dictionary<Tensor, string> _names = null!;
        private double _secondsBefore;
        private string? _sourceFingerprint;

        /// <summary>The chat template conversations are trained in and the tokens that end a turn; null when neither the request, the recipe nor the base names one.</summary>
        private ConversationFormat? _conversations;

        private RecordedChatTemplate? RecordedTemplate =>
            _conversations is { Template: var t } ? new RecordedChatTemplate(t.Name, t.Source) : null;
        private int _totalSteps;
        private int _stepsThisSession;

        public Run(TrainingRequest request, IProgress<TrainingProgress>? progress, CancellationToken cancellation)
        {
            _request = request;
            _progress = progress;
            _cancellation = cancellation;
            _recipe = request.Recipe.With(request.Data, request.Seed);
        }

        private DecoderModel Base => _request.Base;
        private string RunFolder => _request.RunFolder;

        public TrainingResult Execute()
        {
            var tokenizer = _request.Tokenizer ?? TokenizerOf(Base);
            for (int i = 0; i < _recipe.Stages.Count; i++)
                if (_recipe.Stages[i].Data.Sources.Count == 0)
                    throw new RecipeException(_recipe.Origin, $"stages[{i}].data.sources", "no data: give the recipe's data.sources, or --data KIND:PATH");
            bool full = CheckFullMode();
            // Everything is checked (the run folder, the recipe, the data with every image decoded, the front end) before
            // anything is written; a run that fails before its first checkpoint leaves nothing behind that blocks a retry.
            var resumeFrom = CheckRunFolder();
            _model = full ? TrainableCopy(resumeFrom) : Base;
            _plugin = resumeFrom is { } checkpoint
                ? PluginFile.Load(Path.Combine(checkpoint.Folder, TrainingCheckpoint.PluginFolderName), _model, _request.Vision)
                : PluginBuilder.Create(_recipe, _model, _request.Vision);
            if (_plugin.Design != _recipe.Design)
                throw new InvalidDataException($"{resumeFrom?.Folder}: the checkpoint holds a {_plugin.Design} plug-in, the recipe makes {_recipe.Design}");
            if (full)
                _baseParameters = _model.Weights.HuggingFaceTensors(_model.Config).Select(t => new PluginParameter(t.Key, BasePart, t.Value)).ToList();
            _names = _plugin.Parameters.Concat(_baseParameters).ToDictionary<PluginParameter, Tensor, string>(p => p.Tensor, p => p.Name, ReferenceEqualityComparer.Instance);
            _cacheFeatures = _plugin is not VisualExperts && _plugin is not Mma { VisionAdapters.Count: > 0 };
            _conversations = ConversationFormatFor(tokenizer);
            var data = LoadData(tokenizer);
            for (int i = 0; i < _recipe.Stages.Count; i++) NewStream(i, data);
            ResolveSteps(data);
            var baseNames = BaseTensorNames(Base);
            var selections = Enumerable.Range(0, _recipe.Stages.Count).Select(i => Selection(i, baseNames)).ToList();
            bool created = !Directory.Exists(RunFolder);
            Directory.CreateDirectory(RunFolder);
            try
            {
                WriteRecipe(resumeFrom is not null);
                return Train(data, selections, resumeFrom);
            }
            catch (Exception e) when (!_request.Resume && e is not TrainingInterruptedException && TrainingCheckpoint.Latest(RunFolder) is null)
            {
                RemoveFailedStart(created);
                throw;
            }
        }

        /// <summary>What a fresh run wrote before it failed, with no checkpoint to resume from: gone, so the same command can run again.</summary>
        private void RemoveFailedStart(bool created)
        {
            foreach (var file in new[] { RecipeFileName, RunFileName, MetricsFileName })
                if (File.Exists(Path.Combine(RunFolder, file))) File.Delete(Path.Combine(RunFolder, file));
            string checkpoints = Path.Combine(RunFolder, TrainingCheckpoint.FolderName);
            if (Directory.Exists(checkpoints)) Directory.Delete(checkpoints, recursive: true);
            if (created && !Directory.EnumerateFileSystemEntries(RunFolder).Any()) Directory.Delete(RunFolder);
        }

        /// <summary>The part name the base's own tensors are listed under in Bridge's full mode.</summary>
        private const string BasePart = "base";

        /// <summary>
        /// Whether the recipe is Bridge's full mode: a stage training the whole base, which only a Bridge with tune "full"
        /// may have (and which such a Bridge must have).
        /// </summary>
        private bool CheckFullMode()
        {
            int stage = -1;
            for (int i = 0; i < _recipe.Stages.Count && stage < 0; i++)
                if (_recipe.Stages[i].Trainable.WholeBase) stage = i;
            bool fullBridge = _recipe.Design == Bridge.DesignName
                && _recipe.DesignOptions["tune"] is System.Text.Json.Nodes.JsonValue tune && tune.TryGetValue(out string? mode) && string.Equals(mode, "full", StringComparison.OrdinalIgnoreCase);
            if (stage >= 0 && !fullBridge)
                throw new RecipeException(_recipe.Origin, $"stages[{stage}].trainable.base",
                    "a plug-in recipe never trains the base; only Bridge's full mode (design bridge, options.tune \"full\") does, and writes a new base");
            if (fullBridge && stage < 0)
                throw new RecipeException(_recipe.Origin, "design.options.tune", "full mode trains the LLM, but no stage says so (trainable.base \"all\")");
            return fullBridge;
        }

        /// <summary>A trainable F32 copy of the base (the run's own, from its checkpoint when resuming); the base itself is only read.</summary>
        private DecoderModel TrainableCopy((string Folder, CheckpointState State)? resumeFrom)
        {
            if (resumeFrom is { } checkpoint)
            {
                using var saved = DecoderModel.Load(Path.Combine(checkpoint.Folder, TrainingCheckpoint.BaseFolderName));
                return DecoderModel.FromWeights(saved.Config, saved.Weights.ToTrainable());
            }
            return DecoderModel.FromWeights(Base.Config, Base.Weights.ToTrainable());
        }

        /// <summary>What stage <paramref name="index"/> trains: its selection of the plug-in, and in full mode the whole base at the stage's rate.</summary>
        private List<SelectedParameter> Selection(int index, IReadOnlyCollection<string> baseNames)
        {
            var selected = TrainableSelection.Resolve(_recipe, index, _plugin, baseNames).ToList();
            if (_recipe.Stages[index].Trainable.WholeBase)
                selected.AddRange(_baseParameters.Select(p => new SelectedParameter(p, _recipe.Stages[index].LearningRate, TrainableSelection.TakesDecay(p))));
            return selected;
        }

        private TrainingResult Train(Dictionary<string, List<TrainingExample>> data, List<List<SelectedParameter>> selections,
            (string Folder, CheckpointState State)? resumeFrom)
        {
            var state = resumeFrom?.State ?? new CheckpointState
            {
                Step = 0, Stage = 0, StageStep = 0, Drawn = 0, Skipped = 0, Truncated = 0, Tokens = 0, Seconds = 0, Finished = [],
            };
            _secondsBefore = state.Seconds;
            using var metrics = new MetricsLog(Path.Combine(RunFolder, MetricsFileName), state.Step);
            var mma = _plugin as Mma;
            if (mma is not null) mma.Training = true;
            _clock.Start();
            try
            {
                for (int s = state.Stage; s < _recipe.Stages.Count; s++)
                {
                    bool resuming = resumeFrom is not null && s == state.Stage;
                    state = RunStage(s, data, selections[s], state, resuming ? resumeFrom!.Value.Folder : null, metrics);
                }
            }
            finally
            {
                if (mma is not null) mma.Training = false;
                foreach (var p in _plugin.Parameters) p.Tensor.RequiresGrad = true;
            }
            string pluginFolder = Path.Combine(RunFolder, _recipe.Name + ".graft");
            string? baseFolder = null;
            BaseDescription? savedFor = null;
            if (_baseParameters.Count > 0)
            {
                baseFolder = Path.Combine(RunFolder, TrainingCheckpoint.BaseFolderName);
                if (Directory.Exists(baseFolder)) Directory.Delete(baseFolder, recursive: true);   // a run that stopped between the two writes
                TrainingCheckpoint.WriteBase(baseFolder, _model, TokenizerFolder);
                savedFor = TrainingCheckpoint.CurrentDescription(_model);
            }
            PluginFile.Save(_plugin, pluginFolder, Provenance(state, finished: true), savedFor, RecordedTemplate);
            return new TrainingResult(RunFolder, pluginFolder, _plugin, state.Finished, TimeSpan.FromSeconds(Seconds), state.Step, state.Tokens,
                state.Skipped, state.Truncated, resumeFrom?.State.Step, baseFolder);
        }

        /// <summary>The base folder's tokenizer files, copied beside a trained base; null when the base has no folder.</summary>
        private string? TokenizerFolder => Base.Folder.Length > 0 && File.Exists(Path.Combine(Base.Folder, "tokenizer.json")) ? Base.Folder : null;

        private CheckpointContents Contents(AdamW optimizer, CheckpointState state) =>
            new(_plugin, Provenance(state, finished: false), optimizer, _names, _baseParameters.Count > 0 ? _model : null, TokenizerFolder, RecordedTemplate);

        private double Seconds => _secondsBefore + _clock.Elapsed.TotalSeconds;

        /// <summary>One stage from <paramref name="state"/> to its last step; returns the state at its end (the stage added to the finished ones).</summary>
        private CheckpointState RunStage(int index, Dictionary<string, List<TrainingExample>> data, List<SelectedParameter> selection,
            CheckpointState state, string? resumeCheckpoint, MetricsLog metrics)
        {
            var stage = _recipe.Stages[index];
            int total = stage.Steps!.Value;
            foreach (var p in _plugin.Parameters.Concat(_baseParameters)) p.Tensor.RequiresGrad = false;
            foreach (var s in selection) s.Parameter.Tensor.RequiresGrad = true;
            var trainable = selection.Select(s => s.Parameter.Tensor).ToArray();
            var groups = selection.GroupBy(s => (s.LearningRate, s.Decays))
                .Select(g => (Peak: g.Key.LearningRate, Group: new ParameterGroup(g.Select(s => s.Parameter.Tensor).ToList(), g.Key.LearningRate, g.Key.Decays ? stage.WeightDecay : 0f)))
                .ToList();
            var optimizer = new AdamW(groups.Select(g => g.Group), stage.Beta1, stage.Beta2, stage.Eps);
            int warmup = Math.Min(total, stage.Warmup(total));
            var schedules = groups.Select(g => LearningRateSchedule.WarmupCosine(g.Peak, warmup, total, (float)(g.Peak * stage.LearningRateFloor))).ToList();
            var defaultSchedule = LearningRateSchedule.WarmupCosine(stage.LearningRate, warmup, total, (float)(stage.LearningRate * stage.LearningRateFloor));
            var stream = NewStream(index, data);
            if (resumeCheckpoint is not null)
            {
                TrainingCheckpoint.LoadOptimizer(resumeCheckpoint, optimizer, _names);
                stream.Skip(state.Drawn);
            }
            else state = state with { Stage = index, StageStep = 0, Drawn = 0, Current = null };

            var current = state.Current ?? new StageSummary(stage.Name, 0, selection.Select(s => s.Parameter.Part).Distinct().ToList(),
                selection.Sum(s => (long)s.Parameter.Tensor.Length), 0, 0, 0, float.NaN, float.NaN);
            long skipped = state.Skipped, truncated = state.Truncated, tokens = state.Tokens;
            for (int step = state.StageStep; step < total; step++)
            {
                if (_cancellation.IsCancellationRequested) Interrupt(state, optimizer);
                double started = Seconds;
                for (int g = 0; g < groups.Count; g++) groups[g].Group.LearningRate = schedules[g](step);
                var batch = RunStep(index, stage, stream, state.Step, ref skipped, ref truncated);
                float norm = TrainingStep.Apply(trainable, optimizer, batch.Targets, stage.GradientClip);
                if (!float.IsFinite(norm) || !float.IsFinite(batch.Loss))
                    throw new TrainingDivergedException($"stage '{stage.Name}' step {step + 1}: the loss is {batch.Loss} and the gradient norm {norm}; training diverged (lower stages[{index}].learning_rate or set gradient_clip)");
                tokens += batch.Positions;
                double seconds = Seconds - started;
                current = current with
                {
                    Steps = step + 1, Seconds = current.Seconds + seconds, Tokens = current.Tokens + batch.Positions,
                    Targets = current.Targets + batch.Targets, FirstLoss = step == 0 ? batch.Loss : current.FirstLoss, LastLoss = batch.Loss,
                };
                state = state with
                {
                    Step = state.Step + 1, StageStep = step + 1, Drawn = stream.Drawn, Skipped = skipped, Truncated = truncated, Tokens = tokens,
                    Seconds = Seconds, Current = current,
                };
                if (step + 1 == total) state = state with { Finished = [.. state.Finished, current], Current = null };
                bool save = step + 1 == total || (stage.CheckpointEvery > 0 && (step + 1) % stage.CheckpointEvery == 0);
                string? saved = save ? TrainingCheckpoint.Save(RunFolder, state, Contents(optimizer, state)) : null;
                float rate = defaultSchedule(step);
                metrics.Write(new JsonObject
                {
                    ["stage"] = stage.Name, ["stage_index"] = index, ["step"] = state.Step, ["stage_step"] = step + 1, ["stage_steps"] = total,
                    ["loss"] = batch.Loss, ["lr"] = rate, ["grad_norm"] = norm, ["tokens"] = batch.Positions, ["targets"] = batch.Targets,
                    ["tokens_per_s"] = Math.Round(batch.Positions / Math.Max(seconds, 1e-9), 1), ["elapsed_s"] = Math.Round(Seconds, 3),
                    ["skipped"] = skipped, ["truncated"] = truncated,
                });
                double perStep = _clock.Elapsed.TotalSeconds / ++_stepsThisSession;
                _progress?.Report(new TrainingProgress(stage.Name, index, _recipe.Stages.Count, step + 1, total, state.Step, _totalSteps, batch.Loss, rate,
                    batch.Positions / Math.Max(seconds, 1e-9), TimeSpan.FromSeconds(Seconds), TimeSpan.FromSeconds(perStep * (_totalSteps - state.Step)), saved));
            }
            return state;
        }

        /// <summary>The examples of one optimiser step, each forwarded and back-propagated as it comes; returns the step's loss and counts.</summary>
        private (float Loss, long Targets, long Positions) RunStep(int index, StageRecipe stage, ExampleStream stream, int step, ref long skipped, ref long truncated)
        {
            // The base was never trained past its context (dynamic NTK scaling is made for going beyond it).
            int limit = _model.Config.RopeScaling.Kind == RopeScalingKind.Dynamic ? stage.MaxLength : Math.Min(stage.MaxLength, _model.Config.MaxPositionEmbeddings);
            double lossSum = 0;
            long targets = 0, positions = 0;
            int accepted = 0, refusedInARow = 0;
            while (accepted < stage.ExamplesPerStep)
            {
                var example = stream.Next();
                if (_plugin is Mma mma) mma.SeedDropout(DropoutSeed(step, accepted));
                var prepared = _plugin.Prepare(example.ToPrompt(ImageFor));
                if (prepared.Length > limit)
                {
                    var shorter = stage.Overflow == OverflowPolicy.Truncate ? example.Truncated(prepared.Length - limit) : null;
                    if (shorter is null)
                    {
                        skipped++;
                        if (++refusedInARow > stream.Count)
                            throw new RecipeException(_recipe.Origin, $"stages[{index}].max_length",
                                $"every example is longer than {limit} positions and none can be shortened (e.g. {example.Where}, {prepared.Length} positions)");
                        continue;
                    }
                    truncated++;
                    if (_plugin is Mma again) again.SeedDropout(DropoutSeed(step, accepted));
                    prepared = _plugin.Prepare(shorter.ToPrompt(ImageFor));
                }
                refusedInARow = 0;
                var (loss, count) = TrainingStep.Accumulate(_model, prepared);
                lossSum += (double)loss * count;
                targets += count;
                positions += prepared.Length;
                accepted++;
            }
            return ((float)(lossSum / Math.Max(1, targets)), Math.Max(1, targets), positions);
        }

        /// <summary>MMA's dropout seed for one example: fixed by the recipe's seed, the step and the example's place in it.</summary>
        private int DropoutSeed(int step, int example)
        {
            ulong state = ((ulong)(uint)_recipe.Seed << 32) ^ ((ulong)(uint)step << 12) ^ (uint)example;
            return (int)(SeededRandom.SplitMix64(ref state) & int.MaxValue);
        }

        /// <summary>An image as the plug-in takes it: features of a frozen front end, encoded once; otherwise the decoded pixels.</summary>
        private ImagePart ImageFor(string path)
        {
            if (_images.TryGetValue(path, out var part)) return part;
            var image = ImageDecoder.Load(path);
            if (_cacheFeatures)
                using (Autograd.NoGrad())
                    part = new ImagePart(_request.Vision!.Encode(image));
            else part = new ImagePart(image);
            _images[path] = part;
            return part;
        }

        private ExampleStream NewStream(int index, Dictionary<string, List<TrainingExample>> data)
        {
            var mix = _recipe.Stages[index].Data;
            ulong seed = ((ulong)(uint)_recipe.Seed << 32) | (uint)index;
            try
            {
                return new ExampleStream(mix.Sources.Select(s => ((IReadOnlyList<TrainingExample>)data[Key(s)], s.Weight)).ToList(), mix.TextShare, seed);
            }
            catch (ArgumentException e)
            {
                throw new RecipeException(_recipe.Origin, mix.TextShare is null ? $"stages[{index}].data.sources" : $"stages[{index}].data.text_share", e.Message);
            }
        }

        [System.Diagnostics.CodeAnalysis.DoesNotReturn]
        private void Interrupt(CheckpointState state, AdamW optimizer)
        {
            string saved = TrainingCheckpoint.Save(RunFolder, state with { Seconds = Seconds }, Contents(optimizer, state));
            throw new TrainingInterruptedException(RunFolder, saved, state.Step, _cancellation);
        }

        /// <summary>Every source of every stage read once; text-only examples dropped for designs that do nothing to text.</summary>
        private Dictionary<string, List<TrainingExample>> LoadData(Tokenizer tokenizer)
        {
            var data = new Dictionary<string, List<TrainingExample>>(StringComparer.Ordinal);
            for (int i = 0; i < _recipe.Stages.Count; i++)
            {
                var mix = _recipe.Stages[i].Data;
                if (!_plugin.CanRouteText && mix.TextShare > 0)
                    throw new RecipeException(_recipe.Origin, $"stages[{i}].data.text_share",
                        $"a {_plugin.Design} plug-in does nothing to text (text-only requests run the base alone), so text-only examples would train nothing; leave text_share out or at 0");
                foreach (var source in mix.Sources)
                {
                    string key = Key(source);
                    if (data.ContainsKey(key)) continue;
                    var examples = TrainingData.Load(source, _plugin.Layout, tokenizer, Base.Config.VocabSize, _conversations).Examples;
                    data[key] = _plugin.CanRouteText ? examples.ToList() : examples.Where(e => e.HasImage).ToList();
                }
                if (mix.Sources.All(s => data[Key(s)].Count == 0))
                    throw new RecipeException(_recipe.Origin, $"stages[{i}].data.sources",
                        $"no example has an image, and a {_plugin.Design} plug-in learns from images only (text-only requests run the base alone)");
            }
            return data;
        }

        /// <summary>
        /// The template conversations are trained in: the request's, else the recipe's by name, else the base's own (its
        /// tokenizer_config.json chat_template); none when there is none of these (conversation data is then refused).
        /// </summary>
        private ConversationFormat? ConversationFormatFor(Tokenizer tokenizer)
        {
            var template = _request.ChatTemplate;
            if (template is null && _recipe.ChatTemplate is { } name)
                template = ChatTemplates.Resolve(name, tokenizer.ChatTemplate, Base.Config.Architecture, tokenizer.BosToken, tokenizer.EosToken);
            if (template is null)
            {
                try
                {
                    template = Base.Folder.Length > 0 ? ChatTemplates.ForCheckpoint(Base.Folder, tokenizer)
                        : ChatTemplates.Resolve(null, tokenizer.ChatTemplate, Base.Config.Architecture, tokenizer.BosToken, tokenizer.EosToken);
                }
                catch (InvalidOperationException)
                {
                    return null;
                }
            }
            return new ConversationFormat(template, ChatPrompts.EndOfTurnTokens(tokenizer, Base.Config.EosTokenIds));
        }

        /// <summary>Epochs become steps; a total step budget is shared out over the stages. The recipe then holds steps only.</summary>
        private void ResolveSteps(Dictionary<string, List<TrainingExample>> data)
        {
            var steps = _recipe.Stages.Select(s => s.Steps ?? (int)Math.Max(1, Math.Ceiling(s.Epochs!.Value * s.Data.Sources.Sum(src => data[Key(src)].Count) / s.ExamplesPerStep))).ToArray();
            if (_request.Steps is int total) steps = ShareSteps(total, steps);
            _recipe = _recipe.With(stageSteps: steps);
            _totalSteps = steps.Sum();
        }

        /// <summary>A fresh run needs an empty or new folder (created only once everything is checked); a resumed one its recipe and (if any) its newest checkpoint.</summary>
        private (string Folder, CheckpointState State)? CheckRunFolder()
        {
            if (Base.Folder.Length > 0 && IsWithin(Path.GetFullPath(RunFolder), Path.GetFullPath(Base.Folder)))
                throw new IOException($"run folder '{RunFolder}' is inside the base model folder '{Base.Folder}', which is only ever read");
            bool exists = Directory.Exists(RunFolder) && Directory.EnumerateFileSystemEntries(RunFolder).Any();
            if (!_request.Resume)
            {
                if (exists) throw new IOException($"run folder '{RunFolder}' exists and is not empty; continue its run with --resume, or choose another folder");
                return null;
            }
            if (!File.Exists(Path.Combine(RunFolder, RecipeFileName)))
                throw new IOException($"nothing to resume in '{RunFolder}': it holds no {RecipeFileName} of an earlier run");
            return TrainingCheckpoint.Latest(RunFolder);
        }

        /// <summary>recipe.json: written for a fresh run; for a resumed one it must be what the run was started with.</summary>
        private void WriteRecipe(bool resumed)
        {
            string path = Path.Combine(RunFolder, RecipeFileName);
            if (_request.Resume)
            {
                var saved = JsonNode.Parse(File.ReadAllText(path));
                if (FirstDifference(saved, _recipe.Document, "") is { } field)
                    throw new IOException($"the run in '{RunFolder}' was started with another recipe ({RecipeFileName} differs at '{field}'); resume it with the same recipe, data, seed and steps");
                if (!resumed) File.Delete(Path.Combine(RunFolder, MetricsFileName));
                return;
            }
            AtomicFile.WriteAllText(path, _recipe.ToJson() + "\n");
            AtomicFile.WriteAllText(Path.Combine(RunFolder, RunFileName), new RunInfo(
                Base.Folder.Length > 0 ? Path.GetFullPath(Base.Folder) : null, VisionSpec(_request.Vision), _recipe.Origin).ToJson() + "\n");
        }

        /// <summary>The front end as `--vision` names it: a tower's folder (absolute), patch-pixels:GRID:CELLS, or none.</summary>
        private static string? VisionSpec(IVisionFrontEnd? vision) => vision switch
        {
            null => null,
            PatchPixelsFrontEnd pixels => $"{PatchPixelsFrontEnd.KindName}:{pixels.Grid}:{pixels.Cells}",
            _ => vision.Folder is { } folder ? Path.GetFullPath(folder) : null,
        };

        /// <summary>What plugin.json records about the training: the recipe, seed, data, and each stage.</summary>
        private JsonObject Provenance(CheckpointState state, bool finished) => new()
        {
            ["state"] = finished ? "trained" : "training",
            ["trainer"] = "graft train",
            ["recipe"] = _recipe.Name,
            ["recipe_origin"] = _recipe.Origin,
            ["seed"] = _recipe.Seed,
            ["initialisation"] = _plugin.Manifest.Training["initialisation"]?.DeepClone(),
            ["steps"] = state.Step,
            ["data"] = new JsonArray(_recipe.Stages.SelectMany(s => s.Data.Sources).Select(s => s.ToString()).Distinct().Select(s => (JsonNode?)s).ToArray()),
            ["stages"] = new JsonArray(_recipe.Stages.Select((s, i) => (JsonNode?)new JsonObject
            {
                ["name"] = s.Name,
                ["steps"] = s.Steps,
                ["done"] = i < state.Finished.Count ? s.Steps : i == state.Stage ? state.StageStep : 0,
                ["trainable"] = new JsonArray([.. s.Trainable.Parts.Select(p => (JsonNode?)p), .. s.Trainable.Patterns.Select(p => (JsonNode?)p)]),
                ["learning_rate"] = s.LearningRate,
                ["batch_size"] = s.BatchSize,
                ["gradient_accumulation"] = s.GradientAccumulation,
                ["text_share"] = s.Data.TextShare,
                ["final_loss"] = i < state.Finished.Count && float.IsFinite(state.Finished[i].LastLoss) ? state.Finished[i].LastLoss : null,
            }).ToArray()),
            ["skipped"] = state.Skipped,
            ["truncated"] = state.Truncated,
            ["new_base"] = _baseParameters.Count == 0 ? null : new JsonObject
            {
                // Bridge's full mode: the plug-in belongs to the LLM trained with it, written beside it.
                ["folder"] = Path.GetFullPath(Path.Combine(RunFolder, TrainingCheckpoint.BaseFolderName)),
                ["trained_parameters"] = _baseParameters.Sum(p => (long)p.Tensor.Length),
                ["trained_in_stages"] = new JsonArray(_recipe.Stages.Where(st => st.Trainable.WholeBase).Select(st => (JsonNode?)st.Name).ToArray()),
                ["from_folder"] = Base.Folder.Length > 0 ? Path.GetFullPath(Base.Folder) : null,
                ["from_fingerprint"] = _sourceFingerprint ??= BaseFingerprint.Of(Base),
            },
        };

        private static bool IsWithin(string path, string folder)
        {
            string root = Path.TrimEndingDirectorySeparator(folder);
            return path == root || path.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal);
        }

        private static string Key(DataSourceSpec spec) => $"{spec.Kind}:{spec.Path}:{spec.Split}";

        private static Tokenizer TokenizerOf(DecoderModel model) =>
            model.Folder.Length > 0 ? Tokenizer.FromFolder(model.Folder)
                : throw new ArgumentException("the base has no folder to read its tokenizer from; give the tokenizer with the request");

        private static IReadOnlyCollection<string> BaseTensorNames(DecoderModel model)
        {
            if (model.Folder.Length == 0) return [];
            using var checkpoint = SafeTensorsCheckpoint.Open(model.Folder);
            return checkpoint.Tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        }

        /// <summary>The path of the first place two JSON documents differ, or null when they are equal.</summary>
        private static string? FirstDifference(JsonNode? a, JsonNode? b, string path)
        {
            if (JsonNode.DeepEquals(a, b)) return null;
            if (a is JsonObject oa && b is JsonObject ob)
            {
                foreach (var key in oa.Select(p => p.Key).Union(ob.Select(p => p.Key)))
                    if (FirstDifference(oa[key], ob[key], path.Length == 0 ? key : $"{path}.{key}") is { } inner) return inner;
            }
            else if (a is JsonArray aa && b is JsonArray ab && aa.Count == ab.Count)
            {
                for (int i = 0; i < aa.Count; i++)
                    if (FirstDifference(aa[i], ab[i], $"{path}[{i}]") is { } inner) return inner;
            }
            return path.Length == 0 ? "(document)" : path;
        }
    }
}

/// <summary>metrics.jsonl: one JSON object per optimiser step; a resumed run first drops the lines after its checkpoint.</summary>
internal sealed class MetricsLog : IDisposable
{
    private readonly StreamWriter _writer;

    public MetricsLog(string path, int keepThroughStep)
    {
        var kept = File.Exists(path)
            ? File.ReadLines(path).Where(line => JsonNode.Parse(line)?["step"]?.GetValue<int>() <= keepThroughStep).ToList()
            : [];
        AtomicFile.WriteAllText(path, string.Concat(kept.Select(line => line + "\n")));
        _writer = new StreamWriter(path, append: true);
    }

    public void Write(JsonObject line)
    {
        _writer.Write(line.ToJsonString());
        _writer.Write('\n');
        _writer.Flush();
    }

    public void Dispose() => _writer.Dispose();
}

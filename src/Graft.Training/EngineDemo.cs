using System.Diagnostics;
using Graft.Tensors;
using Graft.Tensors.Optim;

namespace Graft.Training;

/// <summary>
/// The smallest end-to-end run of Graft's idea on the engine alone, with generated data and no downloads:
/// a tiny "base" network learns a text task (the last digit of a + b from two digit tokens); it is then
/// frozen, and a small vision plug-in (patch embedding + projector) learns to read the first digit from an
/// image and hand the base an embedding in its place. Text requests keep running the base alone, and their
/// logits are compared bit for bit before and after the plug-in is trained.
/// </summary>
public static class EngineDemo
{
    private const int Digits = 10;
    private const int Width = 16;
    private const int Hidden = 64;
    private const int ImageSize = 10;
    private const int Patch = 5;

    public sealed record Result(
        double BaseTextAccuracy,
        double TextAccuracyAfterPlugin,
        bool TextLogitsBitIdentical,
        double ImageAccuracy,
        double ImageChance,
        int BaseParameters,
        int PluginParameters,
        TimeSpan BaseTrainingTime,
        TimeSpan PluginTrainingTime);

    private sealed record BaseModel(Tensor Embedding, Tensor W1, Tensor B1, Tensor W2, Tensor B2)
    {
        public IEnumerable<(string, Tensor)> Named() =>
            [("embedding", Embedding), ("w1", W1), ("w1.bias", B1), ("w2", W2), ("w2.bias", B2)];

        /// <summary>tokens [N, 2, C] -> logits [N, V].</summary>
        public Tensor Logits(Tensor tokens)
        {
            int n = tokens.Shape[0];
            var hidden = Ops.Silu(Ops.Linear(tokens.Reshape(n, 2 * Width), W1, B1));
            return Ops.Linear(hidden, W2, B2);
        }

        public Tensor TextLogits(int[] pairs) => Logits(Ops.Embedding(Embedding, pairs, pairs.Length / 2, 2));
    }

    private sealed record VisionPlugin(Tensor PatchWeight, Tensor PatchBias, Tensor Projector, Tensor ProjectorBias)
    {
        public IEnumerable<(string, Tensor)> Named() =>
            [("patch", PatchWeight), ("patch.bias", PatchBias), ("projector", Projector), ("projector.bias", ProjectorBias)];

        /// <summary>images [N, 1, H, W] -> one embedding per image [N, 1, C], in the base's token space.</summary>
        public Tensor Embed(Tensor images)
        {
            int n = images.Shape[0];
            var patches = Ops.Gelu(Ops.Patchify(images, PatchWeight, PatchBias, Patch));
            return Ops.Linear(patches.Reshape(n, -1), Projector, ProjectorBias).Reshape(n, 1, Width);
        }
    }

    public static Result Run(int seed = 1, Action<string>? progress = null)
    {
        var random = new Random(seed);
        var model = new BaseModel(
            Tensor.Parameter(Normal(random, Digits * Width, 1f), Digits, Width),
            Tensor.Parameter(Normal(random, Hidden * 2 * Width, MathF.Sqrt(1f / (2 * Width))), Hidden, 2 * Width),
            Tensor.Parameter(new float[Hidden], Hidden),
            Tensor.Parameter(Normal(random, Digits * Hidden, MathF.Sqrt(1f / Hidden)), Digits, Hidden),
            Tensor.Parameter(new float[Digits], Digits));

        var allPairs = new int[Digits * Digits * 2];
        var allSums = new int[Digits * Digits];
        for (int a = 0; a < Digits; a++)
            for (int b = 0; b < Digits; b++)
            {
                allPairs[2 * (a * Digits + b)] = a;
                allPairs[2 * (a * Digits + b) + 1] = b;
                allSums[a * Digits + b] = (a + b) % Digits;
            }

        var clock = Stopwatch.StartNew();
        Train(model.Named(), steps: 600, learningRate: 3e-2f, random, progress, "base", batch =>
        {
            var pairs = new int[batch * 2];
            var targets = new int[batch];
            for (int i = 0; i < batch; i++)
            {
                int row = random.Next(Digits * Digits);
                pairs[2 * i] = allPairs[2 * row];
                pairs[2 * i + 1] = allPairs[2 * row + 1];
                targets[i] = allSums[row];
            }
            return Ops.CrossEntropy(model.TextLogits(pairs), targets);
        });
        var baseTime = clock.Elapsed;

        foreach (var (_, parameter) in model.Named()) parameter.RequiresGrad = false;
        float[] textLogitsBefore;
        using (Autograd.NoGrad()) textLogitsBefore = model.TextLogits(allPairs).ToArray();
        double baseAccuracy = Accuracy(textLogitsBefore, allSums);

        var plugin = new VisionPlugin(
            Tensor.Parameter(Normal(random, Width * Patch * Patch, 0.2f), Width, 1, Patch, Patch),
            Tensor.Parameter(new float[Width], Width),
            Tensor.Parameter(Normal(random, Width * Width * 4, 0.25f), Width, Width * 4),
            Tensor.Parameter(new float[Width], Width));

        clock.Restart();
        Train(plugin.Named(), steps: 800, learningRate: 1e-2f, random, progress, "plug-in", batch =>
        {
            var (images, digits) = DigitImages(random, batch);
            var seconds = Enumerable.Range(0, batch).Select(_ => random.Next(Digits)).ToArray();
            var targets = digits.Zip(seconds, (a, b) => (a + b) % Digits).ToArray();
            var tokens = Ops.Concat([plugin.Embed(images), Ops.Embedding(model.Embedding, seconds, batch, 1)], axis: 1);
            return Ops.CrossEntropy(model.Logits(tokens), targets);
        });
        var pluginTime = clock.Elapsed;

        using var noGrad = Autograd.NoGrad();
        var textLogitsAfter = model.TextLogits(allPairs).ToArray();
        bool identical = textLogitsBefore.AsSpan().SequenceEqual(textLogitsAfter);

        var test = new Random(seed + 1000);
        const int testCount = 500;
        var (testImages, testDigits) = DigitImages(test, testCount);
        var testSeconds = Enumerable.Range(0, testCount).Select(_ => test.Next(Digits)).ToArray();
        var testTokens = Ops.Concat([plugin.Embed(testImages), Ops.Embedding(model.Embedding, testSeconds, testCount, 1)], axis: 1);
        var imageAccuracy = Accuracy(model.Logits(testTokens).ToArray(), testDigits.Zip(testSeconds, (a, b) => (a + b) % Digits).ToArray());

        return new Result(baseAccuracy, Accuracy(textLogitsAfter, allSums), identical, imageAccuracy, 1.0 / Digits,
            model.Named().Sum(p => p.Item2.Length), plugin.Named().Sum(p => p.Item2.Length), baseTime, pluginTime);
    }

    private static void Train(IEnumerable<(string, Tensor)> parameters, int steps, float learningRate, Random random,
        Action<string>? progress, string stage, Func<int, Tensor> loss)
    {
        const int batch = 64;
        var named = parameters.ToList();
        var optimizer = new AdamW(ParameterGroup.SplitByDecay(named, learningRate, 0.01f));
        var schedule = LearningRateSchedule.WarmupCosine(learningRate, steps / 10, steps);
        for (int step = 0; step < steps; step++)
        {
            foreach (var group in optimizer.Groups) group.LearningRate = schedule(step);
            var value = loss(batch);
            value.Backward();
            GradientClipping.ClipByGlobalNorm(named.Select(p => p.Item2), 1f);
            optimizer.Step();
            optimizer.ZeroGrad();
            if (progress is not null && (step % 100 == 0 || step == steps - 1))
                progress($"{stage,-8} step {step + 1,4}/{steps}  loss {value.ToArray()[0]:F4}");
        }
    }

    /// <summary>A vertical stroke at the digit's column with a little noise, [N, 1, H, W], and the digits.</summary>
    private static (Tensor Images, int[] Digits) DigitImages(Random random, int count)
    {
        var pixels = new float[count * ImageSize * ImageSize];
        var digits = new int[count];
        for (int i = 0; i < count; i++)
        {
            int digit = random.Next(Digits);
            digits[i] = digit;
            for (int y = 0; y < ImageSize; y++)
                for (int x = 0; x < ImageSize; x++)
                    pixels[(i * ImageSize + y) * ImageSize + x] = (x == digit ? 1f : 0f) + 0.1f * (float)(random.NextDouble() - 0.5);
        }
        return (Tensor.FromArray(pixels, count, 1, ImageSize, ImageSize), digits);
    }

    private static double Accuracy(float[] logits, int[] targets)
    {
        int correct = 0;
        for (int i = 0; i < targets.Length; i++)
        {
            var row = logits.AsSpan(i * Digits, Digits);
            if (System.Numerics.Tensors.TensorPrimitives.IndexOfMax(row) == targets[i]) correct++;
        }
        return (double)correct / targets.Length;
    }

    private static float[] Normal(Random random, int count, float std)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++) values[i] = (float)(random.NextGaussian() * std);
        return values;
    }

    private static double NextGaussian(this Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}

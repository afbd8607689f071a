using System.Text.Json;
using Graft.Tensors;
using Graft.Tensors.SafeTensors;

namespace Graft.Tests.Support;

/// <summary>A golden case written by tools/reference: inputs `in.*`, expected outputs `out.*`, gradients `grad.*`.</summary>
public sealed class GoldenCase : IDisposable
{
    private readonly SafeTensorsFile _file;

    private GoldenCase(string name, SafeTensorsFile file)
    {
        Name = name;
        _file = file;
        Op = file.Metadata.TryGetValue("op", out var op) ? op : "";
        Args = JsonDocument.Parse(file.Metadata.TryGetValue("args", out var args) ? args : "{}").RootElement.Clone();
    }

    public string Name { get; }
    public string Op { get; }
    public JsonElement Args { get; }

    public static string Folder(string group) => Path.Combine(AppContext.BaseDirectory, "Golden", group);

    /// <summary>The case names in a golden folder, for [MemberData].</summary>
    public static TheoryData<string> Names(string group)
    {
        var data = new TheoryData<string>();
        foreach (var file in Directory.GetFiles(Folder(group), "*.safetensors").OrderBy(f => f, StringComparer.Ordinal))
            data.Add(Path.GetFileNameWithoutExtension(file));
        return data;
    }

    public static GoldenCase Open(string group, string name) =>
        new(name, SafeTensorsFile.Open(Path.Combine(Folder(group), name + ".safetensors")));

    public bool Has(string tensor) => _file.Contains(tensor);

    /// <summary>A float input as a new F32 tensor; trainable when asked, so its gradient can be compared.</summary>
    public Tensor Input(string name, bool trainable = false)
    {
        var info = _file.Info("in." + name);
        var data = _file.ReadFloats("in." + name);
        return trainable ? Tensor.Parameter(data, info.Shape) : Tensor.FromArray(data, info.Shape);
    }

    public int[] Integers(string name) => Array.ConvertAll(_file.ReadIntegers("in." + name), v => checked((int)v));

    public Tensor Expected(string name) => Tensor.FromArray(_file.ReadFloats("out." + name), _file.Info("out." + name).Shape);

    public Tensor ExpectedGrad(string name) => Tensor.FromArray(_file.ReadFloats("grad." + name), _file.Info("grad." + name).Shape);

    public int Int(string arg) => Args.GetProperty(arg).GetInt32();
    public float Float(string arg) => Args.GetProperty(arg).GetSingle();
    public bool Bool(string arg) => Args.GetProperty(arg).GetBoolean();
    public string String(string arg) => Args.GetProperty(arg).GetString()!;

    public void Dispose() => _file.Dispose();
}

public static class TensorAssert
{
    /// <summary>|actual - expected| <= atol + rtol·|expected| element-wise, with the worst element named on failure.</summary>
    public static void Close(Tensor expected, Tensor actual, float rtol = 1e-4f, float atol = 1e-5f, string what = "")
    {
        Assert.True(expected.Shape.AsSpan().SequenceEqual(actual.Shape), $"{what}: shape {actual.ShapeString}, expected {expected.ShapeString}");
        Close(expected.ToArray(), actual.ToArray(), rtol, atol, what);
    }

    public static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, float rtol = 1e-4f, float atol = 1e-5f, string what = "")
    {
        Assert.Equal(expected.Length, actual.Length);
        int worst = -1;
        double worstExcess = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double allowed = atol + rtol * Math.Abs(expected[i]);
            double error = Math.Abs((double)actual[i] - expected[i]);
            if (double.IsNaN(actual[i]) != double.IsNaN(expected[i])) error = double.PositiveInfinity;
            if (error > allowed && error - allowed > worstExcess)
            {
                worstExcess = error - allowed;
                worst = i;
            }
        }
        Assert.True(worst < 0, worst < 0 ? "" : $"{what}: element {worst} is {actual[worst]}, expected {expected[worst]} (rtol {rtol}, atol {atol})");
    }
}

/// <summary>Central finite differences in double precision around float32 parameters.</summary>
public static class FiniteDifference
{
    /// <summary>
    /// Checks d(Σ f(inputs) · upstream)/d input against autograd for every trainable input.
    /// <paramref name="f"/> must be deterministic.
    /// </summary>
    public static void Check(Func<Tensor> f, Tensor[] inputs, float epsilon = 1e-2f, float rtol = 2e-2f, float atol = 2e-3f, int seed = 1)
    {
        var output = f();
        var upstream = new float[output.Length];
        var random = new Random(seed);
        for (int i = 0; i < upstream.Length; i++) upstream[i] = (float)(random.NextDouble() * 2 - 1);
        foreach (var input in inputs) input.Grad = null;
        output.Backward(Tensor.FromArray((float[])upstream.Clone(), output.Shape));

        foreach (var input in inputs)
        {
            if (!input.RequiresGrad) continue;
            var analytic = input.Grad?.ToArray() ?? new float[input.Length];
            var numeric = new float[input.Length];
            var values = input.Span;
            for (int i = 0; i < values.Length; i++)
            {
                float original = values[i];
                values[i] = original + epsilon;
                double plus = Dot(Evaluate(f), upstream);
                values[i] = original - epsilon;
                double minus = Dot(Evaluate(f), upstream);
                values[i] = original;
                numeric[i] = (float)((plus - minus) / (2 * epsilon));
            }
            TensorAssert.Close(numeric, analytic, rtol, atol, $"gradient of {input.Name ?? "input"} {input.ShapeString}");
        }
    }

    private static float[] Evaluate(Func<Tensor> f)
    {
        using var _ = Autograd.NoGrad();
        return f().ToArray();
    }

    private static double Dot(float[] a, float[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += (double)a[i] * b[i];
        return sum;
    }
}

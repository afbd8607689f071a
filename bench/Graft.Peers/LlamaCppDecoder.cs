using System.Diagnostics;
using System.Text.Json.Nodes;
using Graft.Benchmarking;
using Graft.Tensors;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Graft.Peers;

/// <summary>
/// llama.cpp through LLamaSharp on the bench's own random weights, written as GGUF (<see cref="GgufWriter"/>). Its cache
/// is f32 and flash attention is off, so f32 logits match f32 references; threads as the bench's.
/// </summary>
static class LlamaCppDecoder
{
    /// <summary>
    /// llama-decode: {layers, dtype: f32|bf16, threads, prompt: [ids], decode_tokens, prefill_repeats} ->
    /// {peer, note, threads, prefill_seconds, decode_seconds, logits (base64 f32 of the prompt's last position), tokens}.
    /// </summary>
    public static JsonObject Decode(JsonObject request)
    {
        int threads = (int)request["threads"]!;
        string dtypeName = (string)request["dtype"]!;
        var config = DecodeBench.Qwen2HalfBillion((int)request["layers"]!);
        int[] prompt = request["prompt"]!.AsArray().Select(n => (int)n!).ToArray();
        int decodeTokens = (int)request["decode_tokens"]!, repeats = (int)request["prefill_repeats"]!;
        string path = Path.Combine(Path.GetTempPath(), $"graft-bench-{Environment.ProcessId}-{dtypeName}.gguf");
        var log = new List<string>();
        NativeLibraryConfig.All.WithLogCallback((level, message) =>
        {
            if (level is LLamaLogLevel.Error or LLamaLogLevel.Warning) log.Add(message.Trim());
        });
        try
        {
            GgufWriter.Write(path, config, RandomWeights.Build(config, dtypeName == "bf16" ? DType.BF16 : DType.F32, seed: 1));
            GC.Collect();
            var parameters = new ModelParams(path)
            {
                ContextSize = (uint)(prompt.Length + decodeTokens + 8),
                BatchSize = (uint)prompt.Length,
                UBatchSize = (uint)prompt.Length,
                Threads = threads,
                BatchThreads = threads,
                GpuLayerCount = 0,
                TypeK = GGMLType.GGML_TYPE_F32,
                TypeV = GGMLType.GGML_TYPE_F32,
                FlashAttention = false,
            };
            using var weights = LLamaWeights.LoadFromFile(parameters);
            using var context = weights.CreateContext(parameters);
            var handle = context.NativeHandle;
            var batch = new LLamaBatch();
            float[] Run(ReadOnlySpan<int> ids, int start)
            {
                batch.Clear();
                for (int i = 0; i < ids.Length; i++) batch.Add(ids[i], start + i, LLamaSeqId.Zero, i == ids.Length - 1);
                var result = handle.Decode(batch);
                if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode: {result}");
                return handle.GetLogitsIth(ids.Length - 1).ToArray();
            }
            Run(prompt.AsSpan(0, 32), 0);
            for (int i = 0; i < 4; i++) Run(prompt.AsSpan(32 + i, 1), 32 + i);
            var prefill = new List<double>();
            float[] logits = [];
            for (int r = 0; r < repeats; r++)
            {
                handle.MemoryClear();
                var watch = Stopwatch.StartNew();
                logits = Run(prompt, 0);
                prefill.Add(watch.Elapsed.TotalSeconds);
            }
            var promptLogits = logits;
            var steps = new List<double>();
            var tokens = new JsonArray();
            int next = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits);
            for (int i = 0; i < decodeTokens; i++)
            {
                tokens.Add(next);
                var watch = Stopwatch.StartNew();
                logits = Run([next], prompt.Length + i);
                next = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(logits);
                steps.Add(watch.Elapsed.TotalSeconds);
            }
            var metadata = NativeApi.GetLoadedNativeLibrary(NativeLibraryName.LLama)?.Metadata;
            string variant = metadata is null ? "unknown native build" : $"native build {metadata.AvxLevel}";
            return new JsonObject
            {
                ["peer"] = $"llama.cpp (LLamaSharp {LLamaSharpVersion()}, {variant}), {dtypeName} GGUF, f32 KV cache, flash attention off",
                ["note"] = "LLamaSharp.Backend.Cpu's prebuilt AVX-512 build has no VNNI/BF16 paths: bf16 weights are multiplied through float conversion",
                ["threads"] = threads,
                ["prefill_seconds"] = new JsonArray(prefill.Select(s => (JsonNode)s).ToArray()),
                ["decode_seconds"] = new JsonArray(steps.Select(s => (JsonNode)s).ToArray()),
                ["logits"] = Peers.Base64(promptLogits),
                ["tokens"] = tokens,
                ["log"] = new JsonArray(log.Take(5).Select(l => (JsonNode)l).ToArray()),
            };
        }
        finally
        {
            File.Delete(path);
        }
    }

    static string LLamaSharpVersion()
    {
        var attribute = (System.Reflection.AssemblyInformationalVersionAttribute?)Attribute.GetCustomAttribute(
            typeof(LLamaWeights).Assembly, typeof(System.Reflection.AssemblyInformationalVersionAttribute));
        return attribute?.InformationalVersion.Split('+')[0] ?? "unknown";
    }
}

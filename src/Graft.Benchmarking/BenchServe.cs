using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Graft.Models.Imaging;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Serving;
using Graft.Tensors;
using Graft.Training.Tokenization;

namespace Graft.Benchmarking;

/// <summary>
/// `graft bench serve`: the OpenAI-compatible server under load on loopback. A Qwen2-0.5B-shaped base with random bf16
/// weights and a byte-level BPE tokenizer trained on the prompts is written to a temporary folder with a Bridge plug-in (patch-pixels front end);
/// N clients each send M streamed requests one after another, alternating text-only requests to BASE and image requests to
/// BASE+bridge. The same load runs twice in this process: with decode steps batched (--max-batch N) and one request at a
/// time (--max-batch 1); requests/s, tokens/s and time to first token (p50, p99) of both, and their ratio, show the gain.
/// </summary>
internal static class ServeBench
{
    const string PluginName = "bridge";
    const int ImageSide = 64;

    sealed record Measurement(int MaxBatch, int Requests, long CompletionTokens, double Seconds, double[] TimesToFirstToken)
    {
        public double RequestsPerSecond => Requests / Seconds;
        public double TokensPerSecond => CompletionTokens / Seconds;
        public double Ttft(double quantile) => TimesToFirstToken[Math.Min(TimesToFirstToken.Length - 1, (int)Math.Ceiling(quantile * TimesToFirstToken.Length) - 1)];
    }

    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "One JSON object per line per run instead of a table." };
        var clients = new Option<int>("--clients") { Description = "Concurrent clients (and --max-batch of the batched run).", DefaultValueFactory = _ => 8 };
        var requests = new Option<int>("--requests") { Description = "Requests each client sends, one after another.", DefaultValueFactory = _ => 4 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Completion tokens per request.", DefaultValueFactory = _ => 32 };
        var layers = new Option<int>("--layers") { Description = "Decoder layers of the Qwen2-0.5B shape (24); fewer for a quicker run.", DefaultValueFactory = _ => 24 };
        var command = new Command("serve",
            "The server under N concurrent clients mixing text-only and image requests, batched and one request at a time: requests/s, tokens/s, time to first token.");
        foreach (var option in new Option[] { json, clients, requests, maxTokens, layers }) command.Options.Add(option);
        command.SetAction(parseResult => Run(parseResult.GetValue(json), parseResult.GetValue(clients), parseResult.GetValue(requests),
            parseResult.GetValue(maxTokens), parseResult.GetValue(layers)));
        return command;
    }

    static async Task<int> Run(bool json, int clients, int requests, int maxTokens, int layers)
    {
        if (clients < 1 || requests < 1 || maxTokens < 1 || layers < 1)
        {
            Console.Error.WriteLine("--clients, --requests, --max-tokens and --layers must be positive");
            return 2;
        }
        var folder = Path.Combine(Path.GetTempPath(), $"graft-bench-serve-{Guid.NewGuid():N}");
        try
        {
            string modelFolder = Path.Combine(folder, "qwen2-0.5b-shape"), pluginFolder = Path.Combine(folder, PluginName + ".graft");
            var tokenizer = ByteLevelBpeTrainer.Train(Prompts(clients, requests), new BpeTrainingOptions { VocabSize = 320, ModelMaxLength = 4096 });
            var config = DecodeBench.Qwen2HalfBillion(layers) with { MaxPositionEmbeddings = 4096, EosTokenIds = [tokenizer.Load().EosTokenId!.Value] };
            DecoderCheckpointWriter.Save(modelFolder, config, RandomWeights.Build(config, DType.BF16, seed: 1),
                new DecoderCheckpointOptions { StoredAs = DType.BF16, TokenizerFiles = tokenizer.Files });
            using (var model = DecoderModel.Load(modelFolder))
                PluginFile.Save(Bridge.Create(model, new PatchPixelsFrontEnd(grid: 4, cells: 4), new BridgeOptions { Seed = 2 }), pluginFolder);
            var images = Enumerable.Range(0, clients).Select(Image).ToArray();
            var runs = new List<Measurement>();
            foreach (int maxBatch in new[] { clients, 1 })
            {
                var options = new ServingOptions { MaxBatch = maxBatch, MaxQueue = clients * requests, ContextLength = 1024, RequestTimeout = TimeSpan.FromHours(1) };
                await using var engine = ChatEngine.Open(modelFolder, [KeyValuePair.Create(PluginName, pluginFolder)], null, options);
                await using var server = await ChatServer.StartAsync(engine);
                runs.Add(await Load(server, engine.BaseName, clients, requests, maxTokens, images, maxBatch));
            }
            Report(json, config, clients, requests, maxTokens, runs[0], runs[1]);
            return 0;
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>A warm-up request, then every client's requests in turn, all clients at once; each request streamed so its first token is timed.</summary>
    static async Task<Measurement> Load(ChatServer server, string baseName, int clients, int requests, int maxTokens, string[] images, int maxBatch)
    {
        using var http = new HttpClient { BaseAddress = server.Address, Timeout = Timeout.InfiniteTimeSpan };
        await Request(http, Body(baseName, "warm up", null, 4));
        var clock = Stopwatch.StartNew();
        var perClient = await Task.WhenAll(Enumerable.Range(0, clients).Select(async c =>
        {
            var results = new List<(double Ttft, int Tokens)>();
            for (int r = 0; r < requests; r++)
            {
                bool image = IsImageRequest(c, r);
                results.Add(await Request(http, Body(image ? baseName + ChatEngine.PluginSeparator + PluginName : baseName, Prompt(c, r, requests), image ? images[c] : null, maxTokens)));
            }
            return results;
        }));
        double seconds = clock.Elapsed.TotalSeconds;
        var all = perClient.SelectMany(r => r).ToArray();
        return new Measurement(maxBatch, all.Length, all.Sum(r => (long)r.Tokens), seconds, all.Select(r => r.Ttft).Order().ToArray());
    }

    static bool IsImageRequest(int client, int request) => (client + request) % 2 == 1;

    static string Prompt(int client, int request, int requests) =>
        $"Client {client}, request {request}: " + (IsImageRequest(client, request) ? "what is in this picture?" : "tell me a story about the number " + (client * requests + request));

    /// <summary>Every prompt of the load, the text the bench's tokenizer is trained on.</summary>
    static IEnumerable<string> Prompts(int clients, int requests) =>
        Enumerable.Range(0, clients).SelectMany(c => Enumerable.Range(0, requests).Select(r => Prompt(c, r, requests)));

    static string Body(string model, string prompt, string? image, int maxTokens)
    {
        var content = new JsonArray(new JsonObject { ["type"] = "text", ["text"] = prompt });
        if (image is not null) content.Add(new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = image } });
        return new JsonObject
        {
            ["model"] = model,
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = content }),
            ["max_tokens"] = maxTokens,
            ["temperature"] = 0,
            ["stream"] = true,
            ["stream_options"] = new JsonObject { ["include_usage"] = true },
        }.ToJsonString();
    }

    /// <summary>One streamed request: seconds to its first event (sent once the first token is chosen) and the completion tokens its usage reports.</summary>
    static async Task<(double Ttft, int Tokens)> Request(HttpClient http, string body)
    {
        var clock = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        if (response.StatusCode != HttpStatusCode.OK)
            throw new InvalidOperationException($"the server answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        double ttft = -1;
        int tokens = 0;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            if (ttft < 0) ttft = clock.Elapsed.TotalSeconds;
            if (line == "data: [DONE]") break;
            using var chunk = JsonDocument.Parse(line["data: ".Length..]);
            if (chunk.RootElement.TryGetProperty("error", out var error)) throw new InvalidOperationException("the stream failed: " + error);
            if (chunk.RootElement.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                tokens = usage.GetProperty("completion_tokens").GetInt32();
        }
        return (ttft, tokens);
    }

    /// <summary>A PNG data URI of random pixels (a different picture per client).</summary>
    static string Image(int seed)
    {
        var pixels = new byte[ImageSide * ImageSide * 3];
        new Random(seed).NextBytes(pixels);
        return "data:image/png;base64," + Convert.ToBase64String(PngEncoder.Encode(new RgbImage(ImageSide, ImageSide, pixels)));
    }

    static void Report(bool json, LlmConfig config, int clients, int requests, int maxTokens, Measurement batched, Measurement serial)
    {
        var rows = new[] { batched, serial }.Select(m => new JsonObject
        {
            ["model"] = $"qwen2-0.5b-shape-{config.NumLayers}L-bf16",
            ["clients"] = clients,
            ["requests"] = m.Requests,
            ["max_tokens"] = maxTokens,
            ["max_batch"] = m.MaxBatch,
            ["requests_per_s"] = Math.Round(m.RequestsPerSecond, 3),
            ["tokens_per_s"] = Math.Round(m.TokensPerSecond, 3),
            ["ttft_p50_s"] = Math.Round(m.Ttft(0.5), 3),
            ["ttft_p99_s"] = Math.Round(m.Ttft(0.99), 3),
            ["seconds"] = Math.Round(m.Seconds, 2),
            ["tokens_per_s_ratio_over_serial"] = Math.Round(m.TokensPerSecond / serial.TokensPerSecond, 3),
        }).ToArray();
        if (json)
        {
            Console.WriteLine(MachineInfo.Describe().ToJsonString());
            foreach (var row in rows) Console.WriteLine(row.ToJsonString());
            return;
        }
        Console.WriteLine($"graft bench serve: Qwen2-0.5B shape, {config.NumLayers} layers, random bf16 weights, byte-level BPE trained on the prompts; Bridge plug-in (patch-pixels 4x4);"
            + $" {Environment.ProcessorCount} threads, server and clients in this process on loopback");
        Console.WriteLine($"{clients} clients x {requests} streamed requests each, alternating text-only and image ({ImageSide}x{ImageSide} PNG), greedy, up to {maxTokens} tokens each.");
        Console.WriteLine(MachineInfo.Line());
        Console.WriteLine();
        string[] header = ["max batch", "requests", "req/s", "tokens/s", "TTFT p50 s", "TTFT p99 s", "seconds", "tokens/s ratio"];
        var cells = rows.Select(r => new[]
        {
            r["max_batch"]!.ToString(), r["requests"]!.ToString(), Format(r["requests_per_s"]), Format(r["tokens_per_s"]),
            Format(r["ttft_p50_s"]), Format(r["ttft_p99_s"]), Format(r["seconds"]), Format(r["tokens_per_s_ratio_over_serial"]),
        }).ToList();
        var widths = header.Select((h, i) => Math.Max(h.Length, cells.Max(c => c[i].Length))).ToArray();
        Console.WriteLine(string.Join("  ", header.Select((h, i) => h.PadLeft(widths[i]))));
        foreach (var c in cells) Console.WriteLine(string.Join("  ", c.Select((v, i) => v.PadLeft(widths[i]))));
    }

    static string Format(JsonNode? node) => node!.GetValue<double>().ToString("F2", CultureInfo.InvariantCulture);
}

using System.Buffers.Binary;
using System.IO.Compression;
using System.Net.Sockets;
using System.Text;
using Graft.Models.Llm;
using Graft.Plugins;
using Graft.Tests.Models;
using Microsoft.Extensions.Logging;

namespace Graft.Tests.Serving;

/// <summary>Pieces the hostile-input tests share: raw HTTP on a socket, hand-made PNGs, a log that keeps every entry, a plug-in held at a gate.</summary>
internal static class ServingTestKit
{
    /// <summary>
    /// Sends <paramref name="pieces"/> on one connection (waiting <paramref name="pause"/> between them) and reads until the
    /// server closes or the response is complete: the status line and body, or "(closed)" when the server said nothing.
    /// </summary>
    public static async Task<(string StatusLine, string Body)> RawHttp(Uri address, IReadOnlyList<byte[]> pieces, TimeSpan pause = default, TimeSpan? timeout = null)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(address.Host, address.Port);
        using var stop = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
        var stream = client.GetStream();
        for (int i = 0; i < pieces.Count; i++)
        {
            if (i > 0 && pause > TimeSpan.Zero) await Task.Delay(pause, stop.Token);
            try
            {
                await stream.WriteAsync(pieces[i], stop.Token);
            }
            catch (IOException)
            {
                break;
            }
        }
        var received = new MemoryStream();
        var buffer = new byte[65536];
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer, stop.Token)) > 0)
            {
                received.Write(buffer, 0, read);
                if (IsComplete(received.ToArray())) break;
            }
        }
        catch (IOException)
        {
        }
        var text = Encoding.UTF8.GetString(received.ToArray());
        if (text.Length == 0) return ("(closed)", "");
        int headEnd = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        string head = headEnd < 0 ? text : text[..headEnd];
        string body = headEnd < 0 ? "" : text[(headEnd + 4)..];
        if (head.Contains("transfer-encoding: chunked", StringComparison.OrdinalIgnoreCase)) body = Unchunk(body);
        return (head.Split("\r\n")[0], body);
    }

    private static bool IsComplete(byte[] data)
    {
        var text = Encoding.UTF8.GetString(data);
        int headEnd = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (headEnd < 0) return false;
        var head = text[..headEnd];
        var length = head.Split("\r\n").FirstOrDefault(h => h.StartsWith("content-length:", StringComparison.OrdinalIgnoreCase));
        if (length is not null) return Encoding.UTF8.GetByteCount(text[(headEnd + 4)..]) >= int.Parse(length["content-length:".Length..].Trim());
        return text.EndsWith("0\r\n\r\n", StringComparison.Ordinal);
    }

    private static string Unchunk(string body)
    {
        var result = new StringBuilder();
        int at = 0;
        while (at < body.Length)
        {
            int lineEnd = body.IndexOf("\r\n", at, StringComparison.Ordinal);
            if (lineEnd < 0) break;
            int size = Convert.ToInt32(body[at..lineEnd], 16);
            if (size == 0) break;
            result.Append(body, lineEnd + 2, size);
            at = lineEnd + 2 + size + 2;
        }
        return result.ToString();
    }

    public static byte[] Ascii(string text) => Encoding.ASCII.GetBytes(text);

    /// <summary>
    /// A 1-bit greyscale PNG of width x height, all black: a few kilobytes for 4096x4096 (a decompression bomb: 16 Mi
    /// pixels, 48 MiB as RGB). With <paramref name="corruptData"/> its compressed data is garbage after the header, so only
    /// a decoder that inflates it can tell.
    /// </summary>
    public static byte[] PngBomb(int width, int height, bool corruptData = false)
    {
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 1;
        ihdr[9] = 0;
        byte[] data;
        if (corruptData) data = [0x78, 0x9C, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
        else
        {
            using var compressed = new MemoryStream();
            using (var zlib = new ZLibStream(compressed, CompressionLevel.SmallestSize, leaveOpen: true))
            {
                var row = new byte[1 + (width + 7) / 8];
                for (int y = 0; y < height; y++) zlib.Write(row);
            }
            data = compressed.ToArray();
        }
        byte[] signature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];
        return [.. signature, .. ImageDecoderErrorTests.Chunk("IHDR", ihdr), .. ImageDecoderErrorTests.Chunk("IDAT", data), .. ImageDecoderErrorTests.Chunk("IEND", [])];
    }

    public static string DataUri(byte[] png) => "data:image/png;base64," + Convert.ToBase64String(png);

    /// <summary>A chat request to <paramref name="model"/> with a text part and one image part per URL.</summary>
    public static string ImageRequest(string model, IEnumerable<string> urls, int maxTokens = 4)
    {
        var parts = string.Concat(urls.Select(url => ", {\"type\": \"image_url\", \"image_url\": {\"url\": \"" + url + "\"}}"));
        return "{\"model\": \"" + model + "\", \"max_tokens\": " + maxTokens + ", \"temperature\": 0, \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"see\"}" + parts + "]}]}";
    }
}

/// <summary>Every log entry of every category, kept for assertions: level, category, message and attached exception.</summary>
internal sealed class LogCapture : ILoggerFactory, ILoggerProvider
{
    public sealed record Entry(LogLevel Level, string Category, string Message, Exception? Exception);

    private readonly List<Entry> _entries = [];

    public IReadOnlyList<Entry> Entries
    {
        get { lock (_entries) return [.. _entries]; }
    }

    public void Clear()
    {
        lock (_entries) _entries.Clear();
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    private sealed class Logger(LogCapture owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (owner._entries) owner._entries.Add(new Entry(logLevel, category, formatter(state, exception), exception));
        }
    }
}

/// <summary>A Bridge whose preparation of a prompt (where its images are encoded) waits at a gate: a heavy request held in place.</summary>
internal sealed class GatedPlugin(IPlugin inner, ManualResetEventSlim gate) : IPlugin
{
    private int _entered;

    /// <summary>Preparations that reached the gate.</summary>
    public int Entered => Volatile.Read(ref _entered);

    public string Design => inner.Design;
    public PluginManifest Manifest => inner.Manifest;
    public DecoderModel Base => inner.Base;
    public IReadOnlyList<PluginParameter> Parameters => inner.Parameters;
    public bool CanRouteText => inner.CanRouteText;
    public bool CanEncodePixels => inner.CanEncodePixels;
    public PromptLayout Layout => inner.Layout;

    public PreparedInput Prepare(MultimodalPrompt prompt)
    {
        Interlocked.Increment(ref _entered);
        if (!gate.Wait(TimeSpan.FromSeconds(60))) throw new TimeoutException("the test never opened the gate");
        return inner.Prepare(prompt);
    }
}

using System.CommandLine;
using System.Net;
using System.Text.RegularExpressions;
using Graft.Cli;
using Graft.Tests.Plugins;
using Graft.Tests.Support;

namespace Graft.Tests.Serving;

/// <summary>`graft serve` as the command line runs it: options checked, the server up until cancelled (Ctrl-C), then stopped.</summary>
[Collection(ServingCollection.Name)]
public sealed class ServeCommandTests(ServingFixture fixture)
{
    [Fact]
    public async Task Serve_listens_until_cancelled_then_stops()
    {
        var root = new RootCommand();
        root.Subcommands.Add(ServeCommand.Create());
        var output = new StringWriter();
        var error = new StringWriter();
        using var stop = new CancellationTokenSource();
        var run = root.Parse(["serve", "--model", fixture.ModelFolder, "--plugin", $"vision={fixture.PluginFolder}", "--port", "0", "--name", "small"])
            .InvokeAsync(new InvocationConfiguration { Output = TextWriter.Synchronized(output), Error = TextWriter.Synchronized(error) }, stop.Token);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Match listening;
        while (!(listening = Regex.Match(output.ToString(), @"listening on (\S+) \(models: small, small\+vision\)")).Success)
        {
            Assert.False(run.IsCompleted, $"serve ended early: {output} {error}");
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), "serve never said where it listens: " + output);
            await Task.Delay(20);
        }
        using var http = new HttpClient { BaseAddress = new Uri(listening.Groups[1].Value) };
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("health")).StatusCode);
        Assert.Contains("small+vision", await http.GetStringAsync("v1/models"));

        await stop.CancelAsync();
        Assert.Equal(0, await run);
        Assert.Contains("stopping", output.ToString());
        await Assert.ThrowsAsync<HttpRequestException>(() => http.GetAsync("health"));
    }

    [Theory]
    [InlineData("--max-batch", "0", "--max-batch must be >= 1")]
    [InlineData("--max-queue", "0", "--max-queue must be >= 1")]
    [InlineData("--request-timeout", "0", "--request-timeout must be a positive number of seconds")]
    [InlineData("--shutdown-grace", "1000", "--shutdown-grace must be between 0 and")]
    [InlineData("--plugin", "a+b=x.graft", "the name 'a+b' must be non-empty, without spaces or '+'")]
    [InlineData("--plugin", "v=", "names no folder")]
    [InlineData("--host", "example.com", "--host 'example.com' is not an IP address")]
    [InlineData("--name", "a b", "--name 'a b' must be non-empty")]
    public void Bad_options_are_one_line_errors(string option, string value, string message)
    {
        var (code, _, error) = CliRunner.Run([ServeCommand.Create()], "serve", "--model", fixture.ModelFolder, "--port", "0", option, value);
        Assert.Equal(1, code);
        Assert.StartsWith("graft serve: ", error);
        Assert.Contains(message, error);
    }

    /// <summary>A port another program holds, or an address this machine does not have: one line, exit code 1, no trace.</summary>
    [Fact]
    public void A_port_in_use_or_an_address_not_of_this_machine_is_one_line()
    {
        var taken = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        try
        {
            int port = ((IPEndPoint)taken.LocalEndpoint).Port;
            var (code, output, error) = CliRunner.Run([ServeCommand.Create()], "serve", "--model", fixture.ModelFolder, "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal(1, code);
            Assert.Equal($"graft serve: cannot listen on 127.0.0.1:{port}: the port is in use; choose another --port (or --port 0 for any free one)", error.TrimEnd());
            Assert.DoesNotContain("listening", output);
        }
        finally
        {
            taken.Stop();
        }
        // 192.0.2.1 is TEST-NET-1, reserved for documentation: never an address of this machine.
        var (code2, _, error2) = CliRunner.Run([ServeCommand.Create()], "serve", "--model", fixture.ModelFolder, "--host", "192.0.2.1", "--port", "0");
        Assert.Equal(1, code2);
        Assert.Single(error2.TrimEnd().Split('\n'));
        Assert.StartsWith("graft serve: cannot listen on 192.0.2.1: it is not an address of this machine", error2);
    }

    [Fact]
    public void A_plugin_for_another_base_or_a_missing_model_is_refused_before_listening()
    {
        using var temp = new TempFolder();
        var other = temp.Sub("other");
        var config = Graft.Models.Llm.LlmConfig.Load(Path.Combine(fixture.ModelFolder, "config.json"));
        Graft.Models.Llm.DecoderCheckpointWriter.Save(other, config, Graft.Models.Llm.DecoderWeights.CreateRandom(config, seed: 99),
            new Graft.Models.Llm.DecoderCheckpointOptions { TokenizerFolder = fixture.ModelFolder });
        var (code, _, error) = CliRunner.Run([ServeCommand.Create()], "serve", "--model", other, "--plugin", fixture.PluginFolder, "--port", "0");
        Assert.Equal(1, code);
        Assert.StartsWith("graft serve: plug-in", error);
        Assert.Contains("base weights fingerprint", error);
        (code, _, error) = CliRunner.Run([ServeCommand.Create()], "serve", "--model", Path.Combine(fixture.ModelFolder, "nope"), "--port", "0");
        Assert.Equal(1, code);
        Assert.Contains("nope", error);
    }
}

using System.CommandLine;
using Graft.Cli;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Support;

namespace Graft.Tests.Plugins;

/// <summary>`graft plugin new|inspect` and `graft logits --plugin`, invoked in-process.</summary>
public class PluginCliTests
{
    private static (int ExitCode, string Output, string Error) Invoke(params string[] args) =>
        CliRunner.Run([PluginCommand.Create(), LogitsCommand.Create()], args);

    [Fact]
    public void New_then_inspect_reports_design_parameters_by_part_fingerprint_and_size()
    {
        using var temp = new TempFolder();
        string plugin = temp.Sub("b.graft");
        var (code, output, error) = Invoke("plugin", "new", "--design", "bridge", "--base", PluginFixtures.ModelFolder("llama"), "--vision", "patch-pixels:4:2", "--out", plugin, "--seed", "3");
        Assert.True(code == 0, error);
        Assert.Contains("wrote untrained bridge plug-in (projector)", output);

        (code, output, error) = Invoke("plugin", "inspect", plugin);
        Assert.True(code == 0, error);
        Assert.Contains("design: bridge (format 1)", output);
        Assert.Matches(@"base fingerprint: sha256:[0-9a-f]{64}", output);
        // d_v = 3 · 2² = 12 (patch-pixels:4:2), d = 64: 64·12 + 64 + 64·64 + 64.
        Assert.Contains($"  projector: {64 * 12 + 64 + 64 * 64 + 64:N0} in 4 tensors", output);
        Assert.Matches(@"size on disk: [\d,]+ bytes", output);
    }

    [Fact]
    public void New_refuses_an_unknown_design_and_a_missing_base_in_one_line()
    {
        using var temp = new TempFolder();
        var (code, _, error) = Invoke("plugin", "new", "--design", "no-such-design", "--base", PluginFixtures.ModelFolder("llama"), "--out", temp.Sub("w.graft"));
        Assert.Equal(1, code);
        Assert.Contains("'no-such-design' is not a design this build creates", error);
        (code, _, error) = Invoke("plugin", "new", "--design", "bridge", "--base", temp.Sub("nowhere"), "--out", temp.Sub("w.graft"));
        Assert.Equal(1, code);
        Assert.StartsWith("error:", error);
    }

    [Fact]
    public void Logits_with_a_plugin_and_no_image_writes_exactly_the_bytes_the_base_writes()
    {
        using var temp = new TempFolder();
        string model = PluginFixtures.ModelFolder("qwen2");
        string plugin = temp.Sub("b.graft");
        Assert.Equal(0, Invoke("plugin", "new", "--design", "bridge", "--base", model, "--vision", "patch-pixels:4:2", "--out", plugin).ExitCode);

        var (code, _, error) = Invoke("logits", "--model", model, "--ids", "1,17,42,9", "--out", temp.Sub("base.safetensors"));
        Assert.True(code == 0, error);
        (code, _, error) = Invoke("logits", "--model", model, "--plugin", plugin, "--ids", "1,17,42,9", "--out", temp.Sub("plugin.safetensors"));
        Assert.True(code == 0, error);
        Assert.Equal(File.ReadAllBytes(temp.Sub("base.safetensors")), File.ReadAllBytes(temp.Sub("plugin.safetensors")));

        string image = temp.Sub("image.ppm");
        File.WriteAllBytes(image, [.. "P6\n4 4\n255\n"u8.ToArray(), .. Enumerable.Range(0, 48).Select(i => (byte)(i * 5))]);
        (code, _, error) = Invoke("logits", "--model", model, "--plugin", plugin, "--image", image, "--ids", "1,image,42,9", "--out", temp.Sub("image.safetensors"));
        Assert.True(code == 0, error);
        using var written = SafeTensorsFile.Open(temp.Sub("image.safetensors"));
        Assert.Equal([3 + 16, 384], written.Info("logits").Shape);

        (code, _, error) = Invoke("logits", "--model", model, "--plugin", plugin, "--image", image, "--ids", "1,42", "--out", temp.Sub("x.safetensors"));
        Assert.Equal(1, code);
        Assert.Contains("put the word 'image' once", error);
    }

    [Fact]
    public void Logits_refuses_a_plugin_made_for_another_base_in_one_line()
    {
        using var temp = new TempFolder();
        string plugin = temp.Sub("b.graft");
        Assert.Equal(0, Invoke("plugin", "new", "--design", "bridge", "--base", PluginFixtures.ModelFolder("llama"), "--vision", "patch-pixels:4:2", "--out", plugin).ExitCode);
        var (code, _, error) = Invoke("logits", "--model", PluginFixtures.ModelFolder("qwen2"), "--plugin", plugin, "--ids", "1,2", "--out", temp.Sub("x.safetensors"));
        Assert.Equal(1, code);
        Assert.Contains("base architecture: plug-in made for LlamaForCausalLM", error);
    }
}

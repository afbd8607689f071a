using System.CommandLine;
using Graft.Cli;
using Graft.Tensors.SafeTensors;
using Graft.Tests.Support;

namespace Graft.Tests.Models;

/// <summary>`graft inspect` and `graft logits`, parsed and invoked in-process in their documented forms.</summary>
public class LlmCliTests
{
    private static (int ExitCode, string Output, string Error) Invoke(params string[] args) =>
        CliRunner.Run([InspectCommand.Create(), LogitsCommand.Create()], args);

    [Fact]
    public void Inspect_prints_architecture_parameters_dtypes_and_memory()
    {
        var (code, output, error) = Invoke("inspect", LlmGolden.ModelFolder("llama"));
        Assert.True(code == 0, error);
        Assert.Contains("architecture: LlamaForCausalLM", output);
        Assert.Contains("BF16:", output);
        Assert.Contains("memory: weights", output);
        Assert.Matches(@"parameters: [\d,]+", output);
    }

    [Fact]
    public void Logits_writes_one_f32_tensor_equal_to_the_reference()
    {
        using var golden = LlmGolden.Values("internlm2");
        var ids = LlmGolden.Ids(golden, "ids.0");
        var path = Path.Combine(Path.GetTempPath(), $"graft-logits-{Guid.NewGuid():N}.safetensors");
        try
        {
            var (code, _, error) = Invoke("logits", "--model", LlmGolden.ModelFolder("internlm2"), "--ids", string.Join(",", ids), "--out", path);
            Assert.True(code == 0, error);
            using var written = SafeTensorsFile.Open(path);
            var info = Assert.Single(written.Tensors);
            Assert.Equal("logits", info.Name);
            Assert.Equal(Graft.Tensors.DType.F32, info.DType);
            Assert.Equal([ids.Length, 352], info.Shape);
            TensorAssert.Close(LlmGolden.Floats(golden, "logits.0"), LlmGolden.Floats(written, "logits"), rtol: 1e-4f, atol: 2e-5f, what: "graft logits");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("1,x,3", "'x'")]
    [InlineData("1,-2", "'-2'")]
    public void Logits_refuses_bad_ids_with_one_line(string ids, string named)
    {
        var (code, _, error) = Invoke("logits", "--model", LlmGolden.ModelFolder("qwen2"), "--ids", ids, "--out", "unused.safetensors");
        Assert.Equal(1, code);
        Assert.Contains(named, error);
    }

    [Fact]
    public void Inspect_of_a_folder_without_config_names_the_file()
    {
        var folder = Directory.CreateTempSubdirectory("graft-empty-").FullName;
        try
        {
            var (code, _, error) = Invoke("inspect", folder);
            Assert.Equal(1, code);
            Assert.Contains("config.json", error);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}

using System.Runtime.Intrinsics.X86;
using Graft.Benchmarking;

namespace Graft.Tests.Perf;

/// <summary>What `graft bench` prints about the machine agrees with what the runtime detects.</summary>
public class BenchMachineTests
{
    [Fact]
    public void Cpu_flags_agree_with_the_runtime()
    {
        var flags = MachineInfo.CpuFlags();
        Assert.Equal(Avx2.IsSupported, flags.Contains("avx2"));
        Assert.Equal(Avx512F.IsSupported, flags.Contains("avx512f"));
        Assert.Equal(Avx512BW.IsSupported, flags.Contains("avx512bw"));
        Assert.Equal(AvxVnni.IsSupported, flags.Contains("avx_vnni"));
    }

    [Fact]
    public void Machine_description_names_cpu_threads_and_load()
    {
        var machine = MachineInfo.Describe();
        Assert.Equal("machine", (string)machine["kind"]!);
        Assert.Equal(Environment.ProcessorCount, (int)machine["threads"]!);
        Assert.False(string.IsNullOrWhiteSpace((string)machine["cpu"]!));
        if (File.Exists("/proc/loadavg"))
        {
            var load = MachineInfo.LoadAverage()!;
            Assert.Equal(3, load.Length);
            Assert.All(load, l => Assert.True(l >= 0));
        }
    }
}

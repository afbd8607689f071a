using Graft.Training;

namespace Graft.Tests.Training;

public class EngineDemoTests
{
    [Fact]
    [Trait("Category", "Slow")]
    public void PluginLearnsImagesWhileBaseTextLogitsStayBitIdentical()
    {
        var result = EngineDemo.Run(seed: 3);
        Assert.True(result.TextLogitsBitIdentical);
        Assert.Equal(result.BaseTextAccuracy, result.TextAccuracyAfterPlugin);
        Assert.True(result.BaseTextAccuracy > 0.9, $"base text accuracy {result.BaseTextAccuracy}");
        Assert.True(result.ImageAccuracy > 5 * result.ImageChance, $"image accuracy {result.ImageAccuracy}");
    }
}

namespace Graft.Models.Llm;

/// <summary>
/// Rotary inverse frequencies per rope_scaling type, in float32 step by step as transformers computes them
/// (its tables are float32 tensors; the base, like its Python scalars, is a double).
/// </summary>
public static class RopeFrequencies
{
    /// <summary>
    /// The D/2 inverse frequencies used when <paramref name="sequenceLength"/> positions have been seen
    /// (only dynamic NTK depends on it).
    /// </summary>
    public static float[] Compute(LlmConfig config, int sequenceLength)
    {
        int d = config.HeadDim;
        var scaling = config.RopeScaling;
        double theta = config.RopeTheta;
        if (scaling.Kind == RopeScalingKind.Dynamic && sequenceLength > config.MaxPositionEmbeddings)
        {
            double f = scaling.Factor;
            theta *= Math.Pow(f * sequenceLength / config.MaxPositionEmbeddings - (f - 1), d / (double)(d - 2));
        }
        var inverse = new float[d / 2];
        for (int i = 0; i < inverse.Length; i++)
        {
            float exponent = (float)(2 * i) / d;
            float frequency = 1f / (float)Math.Pow((float)theta, exponent);
            inverse[i] = scaling.Kind switch
            {
                RopeScalingKind.Linear => frequency / (float)scaling.Factor,
                RopeScalingKind.Llama3 => Llama3(frequency, scaling),
                _ => frequency,
            };
        }
        return inverse;
    }

    /// <summary>
    /// Long wavelengths (beyond original/low_freq_factor) are divided by the factor, short ones (below
    /// original/high_freq_factor) kept, and the band between interpolated linearly in original/wavelength.
    /// </summary>
    private static float Llama3(float frequency, RopeScaling s)
    {
        float factor = (float)s.Factor, low = (float)s.LowFreqFactor, high = (float)s.HighFreqFactor;
        float original = s.OriginalMaxPositionEmbeddings;
        float wavelength = (float)(2 * Math.PI) / frequency;
        if (wavelength > s.OriginalMaxPositionEmbeddings / s.LowFreqFactor) return frequency / factor;
        if (wavelength < s.OriginalMaxPositionEmbeddings / s.HighFreqFactor) return frequency;
        float smooth = (original / wavelength - low) / (high - low);
        return (1 - smooth) * frequency / factor + smooth * frequency;
    }
}

namespace Graft.Models.Llm;

/// <summary>Rotary inverse frequencies per rope_scaling type, computed in double as transformers does in float32.</summary>
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
            double frequency = 1.0 / Math.Pow(theta, 2.0 * i / d);
            inverse[i] = (float)(scaling.Kind switch
            {
                RopeScalingKind.Linear => frequency / scaling.Factor,
                RopeScalingKind.Llama3 => Llama3(frequency, scaling),
                _ => frequency,
            });
        }
        return inverse;
    }

    /// <summary>
    /// Long wavelengths (beyond original/low_freq_factor) are divided by the factor, short ones (below
    /// original/high_freq_factor) kept, and the band between interpolated linearly in original/wavelength.
    /// </summary>
    private static double Llama3(double frequency, RopeScaling s)
    {
        double wavelength = 2 * Math.PI / frequency;
        double lowWavelength = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
        double highWavelength = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
        if (wavelength > lowWavelength) return frequency / s.Factor;
        if (wavelength < highWavelength) return frequency;
        double smooth = (s.OriginalMaxPositionEmbeddings / wavelength - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
        return (1 - smooth) * frequency / s.Factor + smooth * frequency;
    }
}

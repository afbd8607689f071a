using System.Globalization;
using System.Net;
using System.Text;

namespace Graft.Eval;

/// <summary>
/// A grouped bar chart as SVG text, 0 to 100 on the y axis: one group per column, one bar per series (entry),
/// a legend, and "n/a" where a value is missing (NaN). Plain SVG 1.1, no script, no external fonts.
/// </summary>
public static class SvgBarChart
{
    private static readonly string[] Palette = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"];

    public static string Render(string title, IReadOnlyList<string> series, IReadOnlyList<(string Label, double[] Values)> groups)
    {
        const int left = 50, top = 40, plotHeight = 240, bar = 18, gap = 24, labelSpace = 130;
        int groupWidth = Math.Max(1, series.Count) * bar + gap;
        int width = left + groups.Count * groupWidth + 20;
        int legendTop = top + plotHeight + labelSpace;
        int height = legendTop + 20 * series.Count + 10;
        var svg = new StringBuilder();
        svg.Append(Invariant($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n"));
        svg.Append(Invariant($"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n"));
        svg.Append(Invariant($"<text x=\"{left}\" y=\"20\" font-size=\"14\">{Escape(title)}</text>\n"));
        for (int tick = 0; tick <= 100; tick += 25)
        {
            double y = top + plotHeight - tick * plotHeight / 100.0;
            svg.Append(Invariant($"<line x1=\"{left}\" y1=\"{y:0.#}\" x2=\"{width - 20}\" y2=\"{y:0.#}\" stroke=\"#ddd\"/>"));
            svg.Append(Invariant($"<text x=\"{left - 6}\" y=\"{y + 4:0.#}\" text-anchor=\"end\">{tick}</text>\n"));
        }
        for (int g = 0; g < groups.Count; g++)
        {
            int x0 = left + g * groupWidth + gap / 2;
            for (int s = 0; s < groups[g].Values.Length; s++)
            {
                double value = groups[g].Values[s];
                int x = x0 + s * bar;
                if (double.IsNaN(value))
                {
                    svg.Append(Invariant($"<text x=\"{x + bar / 2}\" y=\"{top + plotHeight - 4}\" text-anchor=\"middle\" font-size=\"9\" fill=\"#888\">n/a</text>\n"));
                    continue;
                }
                double h = Math.Clamp(value, 0, 100) * plotHeight / 100.0;
                svg.Append(Invariant($"<rect x=\"{x}\" y=\"{top + plotHeight - h:0.##}\" width=\"{bar - 2}\" height=\"{h:0.##}\" fill=\"{Palette[s % Palette.Length]}\"><title>{Escape(series[s])}: {value:0.00}</title></rect>\n"));
            }
            int cx = x0 + groups[g].Values.Length * bar / 2;
            svg.Append(Invariant($"<text transform=\"translate({cx},{top + plotHeight + 12}) rotate(40)\">{Escape(groups[g].Label)}</text>\n"));
        }
        for (int s = 0; s < series.Count; s++)
        {
            int y = legendTop + 20 * s;
            svg.Append(Invariant($"<rect x=\"{left}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{Palette[s % Palette.Length]}\"/>"));
            svg.Append(Invariant($"<text x=\"{left + 18}\" y=\"{y + 10}\">{Escape(series[s])}</text>\n"));
        }
        return svg.Append("</svg>\n").ToString();
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static string Escape(string text) => WebUtility.HtmlEncode(text);
}

using System.Globalization;
using System.Text.Json;
using Graft.Models.Imaging;

namespace Graft.Data;

public enum ShapeKind { Circle, Square, Triangle, Diamond, Cross }

public enum ShapesQuestionKind { Colour, Shape, Count, Position, General }

/// <summary>A named paint colour of the shapes world.</summary>
public sealed record ShapeColour(string Name, byte R, byte G, byte B);

/// <summary>One shape in a 3x3 grid cell (0 = top left, row-major), centred at (X, Y) pixels with radius R.</summary>
public sealed record PlacedShape(ShapeKind Kind, ShapeColour Colour, int Cell, double X, double Y, double Radius)
{
    public string Name => ShapesWorld.KindName(Kind);
    public string Position => ShapesWorld.Positions[Cell];
}

/// <summary>A scene: background shades from <see cref="TopShade"/> to <see cref="BottomShade"/> (grey), shapes drawn in order.</summary>
public sealed record ShapesScene(int Size, byte TopShade, byte BottomShade, IReadOnlyList<PlacedShape> Shapes);

/// <summary>A question about a scene, with its short free answer and a multiple-choice form.</summary>
public sealed record ShapesQuestion(ShapesQuestionKind Kind, string Text, string Answer, IReadOnlyList<string> Choices, int AnswerIndex);

public sealed record ShapesWorldOptions
{
    /// <summary>Image width and height in pixels (at least 24, so every shape covers its centre pixel).</summary>
    public int Size { get; init; } = 64;

    /// <summary>Most shapes in one scene (1 to 9).</summary>
    public int MaxShapes { get; init; } = 3;
}

/// <summary>
/// The "shapes" world: flat-colour shapes on a grey gradient, and questions about colour, shape, count
/// and position whose answers follow from the scene. Everything is drawn from one <see cref="SeededRandom"/>,
/// so a seed fixes the output.
/// </summary>
public static class ShapesWorld
{
    public static readonly IReadOnlyList<ShapeColour> Colours =
    [
        new("red", 220, 40, 40), new("green", 40, 160, 60), new("blue", 40, 80, 220),
        new("yellow", 235, 200, 30), new("purple", 140, 60, 180), new("orange", 240, 130, 20),
    ];

    public static readonly IReadOnlyList<string> Positions =
        ["top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"];

    public static readonly IReadOnlyList<string> CountWords = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];

    /// <summary>General questions that need no picture: the text and the one shape that fits it.</summary>
    public static readonly IReadOnlyList<(string Question, ShapeKind Answer)> GeneralQuestions =
    [
        ("Which shape has three sides?", ShapeKind.Triangle),
        ("Which shape has no corners?", ShapeKind.Circle),
        ("Which shape looks like a plus sign?", ShapeKind.Cross),
    ];

    public static string KindName(ShapeKind kind) => kind.ToString().ToLowerInvariant();

    public static string Plural(ShapeKind kind) => kind == ShapeKind.Cross ? "crosses" : KindName(kind) + "s";

    public static ShapesScene NewScene(SeededRandom random, ShapesWorldOptions options)
    {
        if (options.Size < 24) throw new ArgumentOutOfRangeException(nameof(options), $"image size {options.Size} is below 24 pixels");
        if (options.MaxShapes is < 1 or > 9) throw new ArgumentOutOfRangeException(nameof(options), $"{options.MaxShapes} shapes do not fit a 3x3 grid");
        int count = random.Between(1, options.MaxShapes);
        var cells = Enumerable.Range(0, 9).ToList();
        random.Shuffle(cells);
        double cell = options.Size / 3.0;
        var shapes = new List<PlacedShape>(count);
        foreach (int index in cells.Take(count))
        {
            double radius = cell * (0.28 + 0.12 * random.NextDouble());
            double slack = cell / 2 - radius - 0.5;
            double x = (index % 3 + 0.5) * cell + (2 * random.NextDouble() - 1) * slack;
            double y = (index / 3 + 0.5) * cell + (2 * random.NextDouble() - 1) * slack;
            shapes.Add(new PlacedShape((ShapeKind)random.Next(5), random.Pick(Colours), index, x, y, radius));
        }
        byte top = (byte)random.Between(205, 245);
        return new ShapesScene(options.Size, top, (byte)(top - random.Between(0, 25)), shapes);
    }

    public static RgbImage Render(ShapesScene scene)
    {
        int size = scene.Size;
        var pixels = new byte[size * size * 3];
        for (int y = 0; y < size; y++)
        {
            byte shade = (byte)(scene.TopShade + (scene.BottomShade - scene.TopShade) * y / (size - 1));
            pixels.AsSpan(y * size * 3, size * 3).Fill(shade);
        }
        foreach (var shape in scene.Shapes)
        {
            int x0 = Math.Max(0, (int)(shape.X - shape.Radius) - 1), x1 = Math.Min(size - 1, (int)(shape.X + shape.Radius) + 1);
            int y0 = Math.Max(0, (int)(shape.Y - shape.Radius) - 1), y1 = Math.Min(size - 1, (int)(shape.Y + shape.Radius) + 1);
            for (int y = y0; y <= y1; y++)
                for (int x = x0; x <= x1; x++)
                    if (Covers(shape, x + 0.5, y + 0.5))
                    {
                        int at = (y * size + x) * 3;
                        pixels[at] = shape.Colour.R;
                        pixels[at + 1] = shape.Colour.G;
                        pixels[at + 2] = shape.Colour.B;
                    }
        }
        return new RgbImage(size, size, pixels);
    }

    /// <summary>Whether the point (px, py) lies inside the shape: hard edges, no anti-aliasing.</summary>
    public static bool Covers(PlacedShape shape, double px, double py)
    {
        double dx = px - shape.X, dy = py - shape.Y, r = shape.Radius;
        return shape.Kind switch
        {
            ShapeKind.Circle => dx * dx + dy * dy <= r * r,
            ShapeKind.Square => Math.Abs(dx) <= 0.85 * r && Math.Abs(dy) <= 0.85 * r,
            ShapeKind.Diamond => Math.Abs(dx) + Math.Abs(dy) <= r,
            // Apex at (0, -r), base from (-r, 0.8r) to (r, 0.8r).
            ShapeKind.Triangle => dy >= -r && dy <= 0.8 * r && Math.Abs(dx) <= (dy + r) / 1.8,
            _ => (Math.Abs(dx) <= r && Math.Abs(dy) <= 0.3 * r) || (Math.Abs(dy) <= r && Math.Abs(dx) <= 0.3 * r),
        };
    }

    /// <summary>The question kinds this scene can answer unambiguously.</summary>
    public static List<ShapesQuestionKind> AnswerableKinds(ShapesScene scene)
    {
        var kinds = new List<ShapesQuestionKind>();
        if (scene.Shapes.GroupBy(s => s.Kind).Any(g => g.Count() == 1)) kinds.Add(ShapesQuestionKind.Colour);
        kinds.Add(ShapesQuestionKind.Shape);
        kinds.Add(ShapesQuestionKind.Count);
        if (scene.Shapes.GroupBy(s => (s.Kind, s.Colour.Name)).Any(g => g.Count() == 1)) kinds.Add(ShapesQuestionKind.Position);
        return kinds;
    }

    /// <summary>Asks one question of <paramref name="kind"/> (which must be answerable) with 2 to 5 choices.</summary>
    public static ShapesQuestion Ask(ShapesScene scene, ShapesQuestionKind kind, SeededRandom random)
    {
        string text, answer;
        IReadOnlyList<string> pool;
        switch (kind)
        {
            case ShapesQuestionKind.Colour:
            {
                var unique = scene.Shapes.GroupBy(s => s.Kind).Where(g => g.Count() == 1).Select(g => g.Single()).ToList();
                var shape = random.Pick(unique);
                (text, answer, pool) = ($"What colour is the {shape.Name}?", shape.Colour.Name, Colours.Select(c => c.Name).ToList());
                break;
            }
            case ShapesQuestionKind.Shape:
            {
                var shape = random.Pick(scene.Shapes);
                (text, answer, pool) = ($"What shape is at the {shape.Position}?", shape.Name, Enum.GetValues<ShapeKind>().Select(KindName).ToList());
                break;
            }
            case ShapesQuestionKind.Count:
            {
                var asked = (ShapeKind)random.Next(5);
                int count = scene.Shapes.Count(s => s.Kind == asked);
                (text, answer, pool) = ($"How many {Plural(asked)} are there?", CountWords[count], CountWords.Take(6).ToList());
                break;
            }
            case ShapesQuestionKind.Position:
            {
                var unique = scene.Shapes.GroupBy(s => (s.Kind, s.Colour.Name)).Where(g => g.Count() == 1).Select(g => g.Single()).ToList();
                var shape = random.Pick(unique);
                (text, answer, pool) = ($"Where is the {shape.Colour.Name} {shape.Name}?", shape.Position, Positions);
                break;
            }
            default:
            {
                var (question, shape) = random.Pick(GeneralQuestions);
                (text, answer, pool) = (question, KindName(shape), Enum.GetValues<ShapeKind>().Select(KindName).ToList());
                break;
            }
        }
        var choices = pool.Where(p => p != answer).ToList();
        random.Shuffle(choices);
        choices = choices.Take(random.Between(1, Math.Min(4, choices.Count))).Append(answer).ToList();
        random.Shuffle(choices);
        return new ShapesQuestion(kind, text, answer, choices, choices.IndexOf(answer));
    }

    /// <summary>"A red circle is at the top left. A blue square is at the center."</summary>
    public static string Describe(ShapesScene scene) =>
        string.Join(" ", scene.Shapes.Select(s => $"{Article(s.Colour.Name)} {s.Colour.Name} {s.Name} is at the {s.Position}."));

    private static string Article(string word) => "aeiou".Contains(word[0]) ? "An" : "A";

    /// <summary>
    /// Writes <paramref name="count"/> scenes to <paramref name="output"/>:
    /// images/shapes_NNNNN.png with llava.json (every answerable question of a scene as one conversation,
    /// short free answers) and llava.jsonl (the same records), scienceqa/ (one multiple-choice problem per
    /// scene: most with the image, some with the scene told in the hint instead, some general questions
    /// with no context, so all of IMG, TXT and NO occur) and scenes.json (each scene and its questions,
    /// so answers can be checked against the scene). Everything but the PNGs' compressed streams is fixed
    /// by the seed alone; those come from the runtime's zlib, identical for a given runtime.
    /// </summary>
    public static void Write(DataOutput output, int count, ulong seed, ShapesWorldOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        var random = new SeededRandom(seed);
        var llava = new List<(string Id, string Image, List<ShapesQuestion> Questions)>();
        var problems = new List<(string Qid, string Split, ShapesQuestion Question, string Hint, bool Image, int Grade)>();
        var scenes = new List<(string Id, ShapesScene Scene, List<ShapesQuestion> Questions, ShapesQuestion Problem)>();

        for (int i = 0; i < count; i++)
        {
            string id = $"shapes_{i:D5}";
            var scene = NewScene(random, options);
            byte[] png = PngEncoder.Encode(Render(scene));
            output.WriteBytes($"images/{id}.png", png);

            var kinds = AnswerableKinds(scene);
            random.Shuffle(kinds);
            var questions = kinds.Select(k => Ask(scene, k, random)).ToList();
            llava.Add((id, $"{id}.png", questions));

            string qid = i.ToString(CultureInfo.InvariantCulture);
            string split = random.NextDouble() switch { < 0.8 => "train", < 0.9 => "val", _ => "test" };
            double context = random.NextDouble();
            ShapesQuestion problem;
            string hint = "";
            bool hasImage = true;
            if (context < 0.1)
            {
                problem = Ask(scene, ShapesQuestionKind.General, random);
                hasImage = false;
            }
            else if (context < 0.3)
            {
                problem = Ask(scene, random.Pick(kinds), random);
                hint = Describe(scene);
                hasImage = false;
            }
            else
            {
                problem = Ask(scene, random.Pick(kinds), random);
                if (problem.Kind != ShapesQuestionKind.Count && random.Chance(0.3))
                    hint = $"There {(scene.Shapes.Count == 1 ? "is one shape" : $"are {CountWords[scene.Shapes.Count]} shapes")} in the picture.";
            }
            if (hasImage) output.WriteBytes($"scienceqa/images/{split}/{qid}/image.png", png);
            problems.Add((qid, split, problem, hint, hasImage, random.Between(1, 6)));
            scenes.Add((id, scene, questions, problem));
        }

        output.WriteJson("llava.json", w =>
        {
            w.WriteStartArray();
            foreach (var record in llava) WriteLlavaRecord(w, record.Id, record.Image, record.Questions);
            w.WriteEndArray();
        });
        output.WriteJsonLines("llava.jsonl", llava, (w, record) => WriteLlavaRecord(w, record.Id, record.Image, record.Questions));
        output.WriteJson("scienceqa/problems.json", w =>
        {
            w.WriteStartObject();
            foreach (var p in problems) WriteProblem(w, p.Qid, p.Split, p.Question, p.Hint, p.Image, p.Grade);
            w.WriteEndObject();
        });
        output.WriteJson("scienceqa/pid_splits.json", w =>
        {
            w.WriteStartObject();
            foreach (var split in (string[])["train", "val", "test"])
            {
                w.WriteStartArray(split);
                foreach (var p in problems.Where(p => p.Split == split)) w.WriteStringValue(p.Qid);
                w.WriteEndArray();
            }
            w.WriteEndObject();
        });
        output.WriteJson("scenes.json", w =>
        {
            w.WriteStartArray();
            for (int i = 0; i < scenes.Count; i++) WriteScene(w, scenes[i].Id, i.ToString(CultureInfo.InvariantCulture), scenes[i].Scene, scenes[i].Questions, scenes[i].Problem);
            w.WriteEndArray();
        });
    }

    /// <summary>Top-level names <see cref="Write"/> produces.</summary>
    public static readonly IReadOnlyList<string> OutputNames = ["images", "llava.json", "llava.jsonl", "scienceqa", "scenes.json"];

    private static void WriteLlavaRecord(Utf8JsonWriter w, string id, string image, List<ShapesQuestion> questions)
    {
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("image", image);
        w.WriteStartArray("conversations");
        for (int i = 0; i < questions.Count; i++)
        {
            w.WriteStartObject();
            w.WriteString("from", "human");
            w.WriteString("value", i == 0 ? $"{Conversation.ImagePlaceholder}\n{questions[i].Text}" : questions[i].Text);
            w.WriteEndObject();
            w.WriteStartObject();
            w.WriteString("from", "gpt");
            w.WriteString("value", questions[i].Answer);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteProblem(Utf8JsonWriter w, string qid, string split, ShapesQuestion q, string hint, bool image, int grade)
    {
        w.WriteStartObject(qid);
        w.WriteString("question", q.Text);
        w.WriteStartArray("choices");
        foreach (var choice in q.Choices) w.WriteStringValue(choice);
        w.WriteEndArray();
        w.WriteNumber("answer", q.AnswerIndex);
        w.WriteString("hint", hint);
        if (image) w.WriteString("image", "image.png");
        else w.WriteNull("image");
        w.WriteString("task", "closed choice");
        w.WriteString("grade", $"grade{grade}");
        w.WriteString("subject", "natural science");
        w.WriteString("topic", "shapes");
        w.WriteString("category", $"Identify {q.Kind.ToString().ToLowerInvariant()}");
        w.WriteString("skill", "Identify shapes and colours");
        w.WriteString("lecture", Lectures[q.Kind]);
        w.WriteString("solution", $"The answer to \"{q.Text}\" is {q.Answer}.");
        w.WriteString("split", split);
        w.WriteEndObject();
    }

    private static readonly Dictionary<ShapesQuestionKind, string> Lectures = new()
    {
        [ShapesQuestionKind.Colour] = "Every shape in a picture has a colour. Find the shape, then name its colour.",
        [ShapesQuestionKind.Shape] = "A circle is round, a square has four equal sides, a triangle has three sides, a diamond is a square standing on a corner, and a cross looks like a plus sign.",
        [ShapesQuestionKind.Count] = "To count shapes, point at each one of the kind you are asked about exactly once.",
        [ShapesQuestionKind.Position] = "A picture can be split into a grid of three rows and three columns: top, middle and bottom, left, center and right.",
        [ShapesQuestionKind.General] = "A circle is round, a square has four equal sides, a triangle has three sides, a diamond is a square standing on a corner, and a cross looks like a plus sign.",
    };

    private static void WriteScene(Utf8JsonWriter w, string id, string qid, ShapesScene scene, List<ShapesQuestion> questions, ShapesQuestion problem)
    {
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("qid", qid);
        w.WriteNumber("size", scene.Size);
        w.WriteStartArray("shapes");
        foreach (var s in scene.Shapes)
        {
            w.WriteStartObject();
            w.WriteString("shape", s.Name);
            w.WriteString("colour", s.Colour.Name);
            w.WriteString("position", s.Position);
            w.WriteNumber("x", Math.Round(s.X, 3));
            w.WriteNumber("y", Math.Round(s.Y, 3));
            w.WriteNumber("radius", Math.Round(s.Radius, 3));
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("questions");
        foreach (var q in questions) WriteQuestion(w, q);
        w.WriteEndArray();
        w.WritePropertyName("problem");
        WriteQuestion(w, problem);
        w.WriteEndObject();
    }

    private static void WriteQuestion(Utf8JsonWriter w, ShapesQuestion q)
    {
        w.WriteStartObject();
        w.WriteString("kind", q.Kind.ToString().ToLowerInvariant());
        w.WriteString("question", q.Text);
        w.WriteString("answer", q.Answer);
        w.WriteStartArray("choices");
        foreach (var choice in q.Choices) w.WriteStringValue(choice);
        w.WriteEndArray();
        w.WriteNumber("answer_index", q.AnswerIndex);
        w.WriteEndObject();
    }
}

using System.Buffers.Binary;

namespace Graft.Models.Imaging;

/// <summary>
/// JPEG (ITU T.81) with Huffman coding: baseline and extended sequential (SOF0/SOF1), progressive (SOF2) with
/// spectral selection and successive approximation, any integral subsampling, restart markers, 8/16-bit DQT,
/// gray/YCbCr/RGB/CMYK/YCCK. The IDCT, upsampling and colour conversion follow libjpeg(-turbo)'s defaults
/// (islow IDCT, "fancy" triangle upsampling for h2v1/h2v2/h1v2, its fixed-point YCbCr tables), which PIL uses.
/// All coefficients are kept until the end of the image, so baseline and progressive share one path.
/// </summary>
internal static class JpegDecoder
{
    /// <summary>Caps the number of scans; real progressive files use about ten.</summary>
    private const int MaxScans = 1000;

    /// <summary>
    /// Progressive work budget, in passes over every coefficient of the image: a scan costs its blocks times its band
    /// width plus a per-block overhead (<see cref="BlockOverhead"/> coefficients' worth), charged before it runs. The
    /// standard libjpeg and mozjpeg scripts spend 3 to 5 passes; a stream of refinement scans that would spend more than
    /// this is refused, so decoding time stays proportional to the image, not to the number of scans.
    /// </summary>
    private const int MaxCoefficientPasses = 16;

    private const int BlockOverhead = 16;

    internal static readonly byte[] ZigZag =
    [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
        35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
    ];

    private sealed class Component
    {
        public int Id, H, V, QuantTable;
        public int DcPredictor;
        public int BlocksPerLine, BlocksPerColumn; // padded to whole MCUs
        public int Width, Height; // samples actually covering the image: ceil(W * H / Hmax)
        /// <summary>Progressive frames: every block's coefficients, kept until the last scan.</summary>
        public short[] Coefficients = [];

        /// <summary>The quantisation table latched at the start of a sequential scan.</summary>
        public ushort[] QuantValues = [];

        /// <summary>Sequential frames: samples, written block by block as each is decoded (no coefficients are kept).</summary>
        public byte[] Samples = [];

        public int Stride => BlocksPerLine * 8;
    }

    private sealed class Frame
    {
        public int Width, Height, McusX, McusY, MaxH, MaxV;
        public bool Progressive;
        public Component[] Components = [];
    }

    public static RgbImage Decode(ReadOnlySpan<byte> data, DecodeOptions options, string? source, CancellationToken cancellationToken)
    {
        var quant = new ushort[4][];
        var dcTables = new HuffmanTable?[4];
        var acTables = new HuffmanTable?[4];
        Frame? frame = null;
        int restartInterval = 0, scans = 0, orientation = 1;
        long work = 0, budget = 0;
        bool sawJfif = false, sawAdobe = false, sawExif = false;
        int adobeTransform = -1;
        int pos = 2;
        while (true)
        {
            int markerOffset = pos;
            int marker = NextMarker(data, ref pos, source);
            if (marker == 0xD9)
                break;
            if (marker is >= 0xD0 and <= 0xD7 || marker == 0x01)
                continue; // stray RSTn or TEM: no segment follows
            if (data.Length - pos < 2)
                throw new ImageFormatException($"truncated segment length after marker FF{marker:X2}", source, pos);
            int length = BinaryPrimitives.ReadUInt16BigEndian(data[pos..]);
            if (length < 2 || length > data.Length - pos)
                throw new ImageFormatException($"segment length {length} of marker FF{marker:X2} runs past the end of the data", source, pos);
            var body = data.Slice(pos + 2, length - 2);
            long bodyOffset = pos + 2;
            pos += length;
            switch (marker)
            {
                case 0xC0 or 0xC1 or 0xC2:
                    if (frame is not null)
                        throw new ImageFormatException("second SOF marker", source, markerOffset);
                    frame = ReadFrame(body, marker == 0xC2, options.Limits, source, bodyOffset);
                    budget = MaxCoefficientPasses * (64L + BlockOverhead) * frame.Components.Sum(c => (long)c.BlocksPerLine * c.BlocksPerColumn);
                    break;
                case 0xC3 or >= 0xC5 and <= 0xC7 or >= 0xC9 and <= 0xCB or >= 0xCD and <= 0xCF:
                    throw new ImageFormatException($"unsupported JPEG process SOF{marker - 0xC0} ({(marker >= 0xC9 ? "arithmetic coding" : marker == 0xC3 ? "lossless" : "hierarchical")})", source, markerOffset);
                case 0xC4:
                    ReadHuffmanTables(body, dcTables, acTables, source, bodyOffset);
                    break;
                case 0xCC:
                    throw new ImageFormatException("arithmetic coding (DAC) is not supported", source, markerOffset);
                case 0xDB:
                    ReadQuantTables(body, quant, source, bodyOffset);
                    break;
                case 0xDD:
                    if (body.Length != 2)
                        throw new ImageFormatException($"DRI length {body.Length}, expected 2", source, bodyOffset);
                    restartInterval = BinaryPrimitives.ReadUInt16BigEndian(body);
                    break;
                case 0xDA:
                    if (frame is null)
                        throw new ImageFormatException("SOS before SOF", source, markerOffset);
                    cancellationToken.ThrowIfCancellationRequested();
                    if (++scans > MaxScans)
                        throw new ImageFormatException($"more than {MaxScans} scans", source, markerOffset);
                    var scan = ReadScanHeader(body, frame, dcTables, acTables, source, bodyOffset);
                    if (frame.Progressive)
                    {
                        work += ScanWork(frame, scan);
                        if (work > budget)
                            throw new ImageFormatException(
                                $"progressive scans would make more than {MaxCoefficientPasses} passes over the image's coefficients (scan {scans}); real encoders make at most a few", source, markerOffset);
                    }
                    else
                        foreach (var c in scan.Components)
                        {
                            if (quant[c.QuantTable] is null)
                                throw new ImageFormatException($"component {c.Id} uses undefined quantisation table {c.QuantTable}", source, markerOffset);
                            c.QuantValues = quant[c.QuantTable]!;
                            if (c.Samples.Length == 0)
                                c.Samples = ZeroCoefficientSamples(c);
                        }
                    pos = new ScanDecoder(data, pos, frame, scan, restartInterval, source, cancellationToken).Run();
                    break;
                case 0xDC:
                    throw new ImageFormatException("DNL marker (height defined after the first scan) is not supported", source, markerOffset);
                case 0xE0:
                    sawJfif |= body.StartsWith("JFIF\0"u8);
                    break;
                case 0xE1:
                    if (body.StartsWith("Exif\0\0"u8) && !sawExif)
                    {
                        sawExif = true; // PIL reads the first Exif segment
                        orientation = ExifOrientation.Read(body[6..]);
                    }
                    break;
                case 0xEE:
                    if (body.Length >= 12 && body.StartsWith("Adobe"u8))
                    {
                        sawAdobe = true;
                        adobeTransform = body[11];
                    }
                    break;
                default:
                    break; // APPn, COM and other segments carry nothing we need
            }
        }
        if (frame is null)
            throw new ImageFormatException("no SOF frame header before EOI", source, pos);
        if (scans == 0)
            throw new ImageFormatException("no scan before EOI", source, pos);
        foreach (var c in frame.Components)
            if (quant[c.QuantTable] is null)
                throw new ImageFormatException($"component {c.Id} uses undefined quantisation table {c.QuantTable}", source, pos);

        foreach (var c in frame.Components)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (frame.Progressive)
                c.Samples = JpegIdct.Plane(c.Coefficients, c.BlocksPerLine, c.BlocksPerColumn, quant[c.QuantTable]!);
            else if (c.Samples.Length == 0)
                c.Samples = ZeroCoefficientSamples(c); // a component no scan carried
            c.Coefficients = [];
        }
        var colour = ChooseColourSpace(frame, sawJfif, sawAdobe, adobeTransform);
        return JpegColour.ToRgb(frame.Width, frame.Height, frame.MaxH, frame.MaxV,
            frame.Components.Select(c => new JpegColour.Plane(c.Samples, c.Stride, c.Width, c.Height, c.H, c.V)).ToArray(),
            colour, sawAdobe, options.ApplyExifOrientation ? orientation : 1, cancellationToken);
    }

    /// <summary>
    /// A sequential component's sample plane before any block is decoded: 128, what all-zero coefficients give, so
    /// blocks the data never reaches (a truncated scan) read as libjpeg leaves them.
    /// </summary>
    private static byte[] ZeroCoefficientSamples(Component c)
    {
        var samples = new byte[checked(c.Stride * c.BlocksPerColumn * 8)];
        samples.AsSpan().Fill(128);
        return samples;
    }

    /// <summary>A scan's cost in coefficient visits: its blocks times (band width + per-block overhead).</summary>
    private static long ScanWork(Frame frame, Scan scan)
    {
        long blocks = scan.Components.Length == 1
            ? (long)((scan.Components[0].Width + 7) / 8) * ((scan.Components[0].Height + 7) / 8)
            : (long)frame.McusX * frame.McusY * scan.Components.Sum(c => c.H * c.V);
        return blocks * (scan.Se - scan.Ss + 1 + BlockOverhead);
    }

    /// <summary>libjpeg's default_decompress_parms rules, so files without colour metadata read as PIL reads them.</summary>
    private static JpegColour.Space ChooseColourSpace(Frame frame, bool sawJfif, bool sawAdobe, int adobeTransform)
    {
        var c = frame.Components;
        return c.Length switch
        {
            1 => JpegColour.Space.Gray,
            3 when sawJfif => JpegColour.Space.YCbCr,
            3 when sawAdobe => adobeTransform == 0 ? JpegColour.Space.Rgb : JpegColour.Space.YCbCr,
            3 => c[0].Id == 'R' && c[1].Id == 'G' && c[2].Id == 'B' ? JpegColour.Space.Rgb : JpegColour.Space.YCbCr,
            _ => sawAdobe && adobeTransform != 0 ? JpegColour.Space.Ycck : JpegColour.Space.Cmyk,
        };
    }

    /// <summary>Finds the next marker from pos, skipping fill bytes and any garbage; returns its code, pos after it.</summary>
    private static int NextMarker(ReadOnlySpan<byte> data, ref int pos, string? source)
    {
        while (pos < data.Length - 1)
        {
            if (data[pos] == 0xFF && data[pos + 1] is not (0x00 or 0xFF))
            {
                int marker = data[pos + 1];
                pos += 2;
                return marker;
            }
            pos++;
        }
        throw new ImageFormatException("truncated: end of data before the EOI marker", source, data.Length);
    }

    private static Frame ReadFrame(ReadOnlySpan<byte> body, bool progressive, ImageLimits limits, string? source, long offset)
    {
        if (body.Length < 6)
            throw new ImageFormatException("SOF segment too short", source, offset);
        if (body[0] != 8)
            throw new ImageFormatException($"sample precision {body[0]} is not supported (only 8-bit)", source, offset);
        int height = BinaryPrimitives.ReadUInt16BigEndian(body[1..]), width = BinaryPrimitives.ReadUInt16BigEndian(body[3..]);
        if (height == 0)
            throw new ImageFormatException("height 0 (defined later by DNL) is not supported", source, offset + 1);
        ImageDecoder.CheckDimensions(width, height, limits, source, offset + 1);
        int count = body[5];
        if (count is not (1 or 3 or 4))
            throw new ImageFormatException($"{count} components; only 1 (gray), 3 and 4 are supported", source, offset + 5);
        if (body.Length != 6 + 3 * count)
            throw new ImageFormatException($"SOF length {body.Length + 2} does not match {count} components", source, offset);
        var frame = new Frame { Width = width, Height = height, Progressive = progressive, Components = new Component[count] };
        for (int i = 0; i < count; i++)
        {
            var b = body.Slice(6 + 3 * i, 3);
            int h = b[1] >> 4, v = b[1] & 15;
            if (h is < 1 or > 4 || v is < 1 or > 4)
                throw new ImageFormatException($"component {b[0]} has sampling factors {h}x{v} outside 1..4", source, offset + 7 + 3 * i);
            if (b[2] > 3)
                throw new ImageFormatException($"component {b[0]} uses quantisation table {b[2]} (0..3 allowed)", source, offset + 8 + 3 * i);
            for (int j = 0; j < i; j++)
                if (frame.Components[j].Id == b[0])
                    throw new ImageFormatException($"duplicate component id {b[0]}", source, offset + 6 + 3 * i);
            frame.Components[i] = new Component { Id = b[0], H = h, V = v, QuantTable = b[2] };
        }
        frame.MaxH = frame.Components.Max(c => c.H);
        frame.MaxV = frame.Components.Max(c => c.V);
        frame.McusX = (width + 8 * frame.MaxH - 1) / (8 * frame.MaxH);
        frame.McusY = (height + 8 * frame.MaxV - 1) / (8 * frame.MaxV);
        foreach (var c in frame.Components)
        {
            if (frame.MaxH % c.H != 0 || frame.MaxV % c.V != 0)
                throw new ImageFormatException($"component {c.Id} sampling {c.H}x{c.V} is not an integral fraction of {frame.MaxH}x{frame.MaxV}", source, offset + 6);
            c.Width = (width * c.H + frame.MaxH - 1) / frame.MaxH;
            c.Height = (height * c.V + frame.MaxV - 1) / frame.MaxV;
            c.BlocksPerLine = frame.McusX * c.H;
            c.BlocksPerColumn = frame.McusY * c.V;
            if (progressive)
                c.Coefficients = new short[checked(c.BlocksPerLine * c.BlocksPerColumn * 64)];
        }
        return frame;
    }

    private static void ReadQuantTables(ReadOnlySpan<byte> body, ushort[][] quant, string? source, long offset)
    {
        int p = 0;
        while (p < body.Length)
        {
            int precision = body[p] >> 4, id = body[p] & 15;
            if (precision > 1 || id > 3)
                throw new ImageFormatException($"DQT precision {precision} / table {id} invalid", source, offset + p);
            int size = precision == 0 ? 64 : 128;
            if (body.Length - p - 1 < size)
                throw new ImageFormatException("DQT segment too short", source, offset + p);
            var table = new ushort[64];
            for (int k = 0; k < 64; k++)
                table[ZigZag[k]] = precision == 0 ? body[p + 1 + k] : BinaryPrimitives.ReadUInt16BigEndian(body[(p + 1 + 2 * k)..]);
            quant[id] = table;
            p += 1 + size;
        }
    }

    private static void ReadHuffmanTables(ReadOnlySpan<byte> body, HuffmanTable?[] dc, HuffmanTable?[] ac, string? source, long offset)
    {
        int p = 0;
        while (p < body.Length)
        {
            if (body.Length - p < 17)
                throw new ImageFormatException("DHT segment too short", source, offset + p);
            int cls = body[p] >> 4, id = body[p] & 15;
            if (cls > 1 || id > 3)
                throw new ImageFormatException($"DHT class {cls} / table {id} invalid", source, offset + p);
            var counts = body.Slice(p + 1, 16);
            int total = 0;
            foreach (var n in counts)
                total += n;
            if (total > 256 || body.Length - p - 17 < total)
                throw new ImageFormatException($"DHT table with {total} symbols does not fit its segment", source, offset + p);
            var table = new HuffmanTable(counts, body.Slice(p + 17, total), source, offset + p);
            (cls == 0 ? dc : ac)[id] = table;
            p += 17 + total;
        }
    }

    private sealed class Scan
    {
        public Component[] Components = [];
        public HuffmanTable?[] Dc = [], Ac = [];
        public int Ss, Se, Ah, Al;
    }

    private static Scan ReadScanHeader(ReadOnlySpan<byte> body, Frame frame, HuffmanTable?[] dcTables, HuffmanTable?[] acTables, string? source, long offset)
    {
        if (body.Length < 1)
            throw new ImageFormatException("SOS segment too short", source, offset);
        int count = body[0];
        if (count is < 1 or > 4 || body.Length != 4 + 2 * count)
            throw new ImageFormatException($"SOS with {count} components has length {body.Length + 2}", source, offset);
        var scan = new Scan { Components = new Component[count], Dc = new HuffmanTable?[count], Ac = new HuffmanTable?[count] };
        int blocksPerMcu = 0;
        for (int i = 0; i < count; i++)
        {
            int id = body[1 + 2 * i], tables = body[2 + 2 * i];
            var c = frame.Components.FirstOrDefault(x => x.Id == id)
                ?? throw new ImageFormatException($"scan names component {id}, which the frame does not have", source, offset + 1 + 2 * i);
            if (Array.IndexOf(scan.Components, c) >= 0)
                throw new ImageFormatException($"scan names component {id} twice", source, offset + 1 + 2 * i);
            int dcId = tables >> 4, acId = tables & 15;
            if (dcId > 3 || acId > 3)
                throw new ImageFormatException($"Huffman table ids {dcId}/{acId} out of range", source, offset + 2 + 2 * i);
            scan.Components[i] = c;
            scan.Dc[i] = dcTables[dcId];
            scan.Ac[i] = acTables[acId];
            blocksPerMcu += c.H * c.V;
        }
        if (count > 1 && blocksPerMcu > 10)
            throw new ImageFormatException($"interleaved scan has {blocksPerMcu} blocks per MCU (at most 10 allowed)", source, offset);
        int q = 1 + 2 * count;
        scan.Ss = body[q];
        scan.Se = body[q + 1];
        scan.Ah = body[q + 2] >> 4;
        scan.Al = body[q + 2] & 15;
        bool valid = frame.Progressive
            ? scan.Se <= 63 && scan.Ss <= scan.Se && (scan.Ss == 0 ? scan.Se == 0 : count == 1) && scan.Al <= 13 && scan.Ah <= 13
            : scan.Ss == 0 && scan.Se == 63 && scan.Ah == 0 && scan.Al == 0;
        if (!valid)
            throw new ImageFormatException($"invalid spectral selection / approximation Ss={scan.Ss} Se={scan.Se} Ah={scan.Ah} Al={scan.Al}", source, offset + q);
        for (int i = 0; i < count; i++)
        {
            bool needsDc = scan.Ss == 0 && scan.Ah == 0, needsAc = scan.Se > 0;
            if ((needsDc && scan.Dc[i] is null) || (needsAc && scan.Ac[i] is null))
                throw new ImageFormatException($"scan uses an undefined Huffman table for component {scan.Components[i].Id}", source, offset + 2 + 2 * i);
        }
        return scan;
    }

    /// <summary>Decodes one scan's entropy-coded data into the components' coefficients.</summary>
    private ref struct ScanDecoder
    {
        private readonly ReadOnlySpan<byte> _data;
        private readonly Frame _frame;
        private readonly Scan _scan;
        private readonly int _restartInterval;
        private readonly string? _source;
        private readonly CancellationToken _cancellationToken;
        private readonly short[] _block = new short[64];
        private BitReader _bits;
        private int _eobRun;

        public ScanDecoder(ReadOnlySpan<byte> data, int start, Frame frame, Scan scan, int restartInterval, string? source, CancellationToken cancellationToken)
        {
            _cancellationToken = cancellationToken;
            _data = data;
            _frame = frame;
            _scan = scan;
            _restartInterval = restartInterval;
            _source = source;
            _bits = new BitReader(data, start, source);
        }

        /// <summary>Returns the position just after the scan's data (at the next marker).</summary>
        public int Run()
        {
            foreach (var c in _scan.Components)
                c.DcPredictor = 0;
            bool single = _scan.Components.Length == 1;
            var only = _scan.Components[0];
            // A single-component scan codes only the blocks that cover the component, not the MCU padding.
            int unitsX = single ? (only.Width + 7) / 8 : _frame.McusX;
            int unitsY = single ? (only.Height + 7) / 8 : _frame.McusY;
            long total = (long)unitsX * unitsY;
            for (long unit = 0; unit < total; unit++)
            {
                if (_restartInterval > 0 && unit > 0 && unit % _restartInterval == 0)
                    Restart();
                if (_bits.Exhausted && _eobRun == 0)
                {
                    // No real bits remain, yet every further block needs some: the segment is corrupt or cut short.
                    // Skip to the next restart marker (or end the scan) so work stays proportional to the data.
                    if (_restartInterval == 0)
                        break;
                    unit += _restartInterval - 1 - unit % _restartInterval;
                    continue;
                }
                int ux = (int)(unit % unitsX), uy = (int)(unit / unitsX);
                if (ux == 0)
                    _cancellationToken.ThrowIfCancellationRequested();
                if (single)
                    DecodeBlock(only, 0, ux, uy);
                else
                    for (int i = 0; i < _scan.Components.Length; i++)
                    {
                        var c = _scan.Components[i];
                        for (int by = 0; by < c.V; by++)
                            for (int bx = 0; bx < c.H; bx++)
                                DecodeBlock(c, i, ux * c.H + bx, uy * c.V + by);
                    }
            }
            return _bits.MarkerPosition();
        }

        private void Restart()
        {
            int at = _bits.MarkerPosition();
            while (at + 1 < _data.Length && !(_data[at] == 0xFF && _data[at + 1] is not (0x00 or 0xFF)))
                at++;
            if (at + 1 < _data.Length && _data[at + 1] is >= 0xD0 and <= 0xD7)
                at += 2;
            else
                throw new ImageFormatException("expected a restart marker (RSTn)", _source, at);
            _bits = new BitReader(_data, at, _source);
            _eobRun = 0;
            foreach (var c in _scan.Components)
                c.DcPredictor = 0;
        }

        private void DecodeBlock(Component c, int index, int bx, int by)
        {
            if (!_frame.Progressive)
            {
                var block = _block.AsSpan();
                block.Clear();
                DecodeSequential(c, index, block);
                JpegIdct.Block(block, c.QuantValues, c.Samples.AsSpan(by * 8 * c.Stride + bx * 8), c.Stride);
                return;
            }
            var coef = c.Coefficients.AsSpan((by * c.BlocksPerLine + bx) * 64, 64);
            if (_scan.Ss == 0)
            {
                if (_scan.Ah == 0)
                {
                    int t = _bits.Decode(_scan.Dc[index]!);
                    c.DcPredictor += t == 0 ? 0 : _bits.ReceiveExtend(t);
                    coef[0] = (short)(c.DcPredictor << _scan.Al);
                }
                else if (_bits.ReadBit() != 0)
                    coef[0] |= (short)(1 << _scan.Al);
            }
            else if (_scan.Ah == 0)
                DecodeAcFirst(_scan.Ac[index]!, coef);
            else
                DecodeAcRefine(_scan.Ac[index]!, coef);
        }

        private void DecodeSequential(Component c, int index, Span<short> coef)
        {
            int t = _bits.Decode(_scan.Dc[index]!);
            if (t > 11)
                throw _bits.Error($"DC difference of {t} bits");
            c.DcPredictor += t == 0 ? 0 : _bits.ReceiveExtend(t);
            coef[0] = (short)c.DcPredictor;
            var ac = _scan.Ac[index]!;
            for (int k = 1; k < 64; k++)
            {
                int rs = _bits.Decode(ac), r = rs >> 4, s = rs & 15;
                if (s == 0)
                {
                    if (r != 15)
                        break;
                    k += 15;
                    continue;
                }
                k += r;
                if (k > 63)
                    throw _bits.Error("AC run goes past coefficient 63");
                coef[ZigZag[k]] = (short)_bits.ReceiveExtend(s);
            }
        }

        private void DecodeAcFirst(HuffmanTable ac, Span<short> coef)
        {
            if (_eobRun > 0)
            {
                _eobRun--;
                return;
            }
            for (int k = _scan.Ss; k <= _scan.Se; k++)
            {
                int rs = _bits.Decode(ac), r = rs >> 4, s = rs & 15;
                if (s == 0)
                {
                    if (r < 15)
                    {
                        _eobRun = (1 << r) - 1 + (r > 0 ? _bits.ReadBits(r) : 0);
                        break;
                    }
                    k += 15;
                    continue;
                }
                k += r;
                if (k > _scan.Se)
                    throw _bits.Error($"AC run goes past the band end {_scan.Se}");
                coef[ZigZag[k]] = (short)(_bits.ReceiveExtend(s) * (1 << _scan.Al));
            }
        }

        /// <summary>Successive-approximation refinement of AC coefficients (libjpeg's decode_mcu_AC_refine).</summary>
        private void DecodeAcRefine(HuffmanTable ac, Span<short> coef)
        {
            int p1 = 1 << _scan.Al, m1 = -1 << _scan.Al;
            int k = _scan.Ss;
            if (_eobRun == 0)
            {
                for (; k <= _scan.Se; k++)
                {
                    int rs = _bits.Decode(ac), r = rs >> 4, s = rs & 15;
                    if (s != 0)
                    {
                        if (s != 1)
                            throw _bits.Error($"refinement coefficient of {s} bits (must be 1)");
                        s = _bits.ReadBit() != 0 ? p1 : m1;
                    }
                    else if (r != 15)
                    {
                        _eobRun = (1 << r) + (r > 0 ? _bits.ReadBits(r) : 0);
                        break;
                    }
                    do
                    {
                        ref short z = ref coef[ZigZag[k]];
                        if (z != 0)
                            Refine(ref z, p1, m1);
                        else if (--r < 0)
                            break;
                        k++;
                    } while (k <= _scan.Se);
                    if (s != 0)
                    {
                        if (k > _scan.Se)
                            throw _bits.Error($"refinement run goes past the band end {_scan.Se}");
                        coef[ZigZag[k]] = (short)s;
                    }
                }
            }
            if (_eobRun > 0)
            {
                for (; k <= _scan.Se; k++)
                {
                    ref short z = ref coef[ZigZag[k]];
                    if (z != 0)
                        Refine(ref z, p1, m1);
                }
                _eobRun--;
            }
        }

        private void Refine(ref short z, int p1, int m1)
        {
            if (_bits.ReadBit() != 0 && (z & p1) == 0)
                z = (short)(z >= 0 ? z + p1 : z + m1);
        }
    }

    /// <summary>
    /// Reads entropy-coded bits MSB first, removing 0xFF00 stuffing. At a marker or the end of the data it supplies
    /// zero bits (as libjpeg does) and stays put, so callers always terminate; the marker search that follows the
    /// scan then reports truncation when no EOI remains.
    /// </summary>
    private ref struct BitReader(ReadOnlySpan<byte> data, int start, string? source)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private int _pos = start;
        private uint _buffer;
        private int _count;
        private int _padding; // zero bits supplied past a marker or the end, always the buffer's last ones

        /// <summary>Every real bit before the marker / end of data has been consumed.</summary>
        public readonly bool Exhausted => _padding > 0 && _count <= _padding;

        public readonly int MarkerPosition() => _pos;

        public readonly ImageFormatException Error(string problem) => new(problem, source, _pos);

        private void Fill()
        {
            while (_count <= 24)
            {
                uint b = 0;
                bool real = false;
                if (_pos < _data.Length)
                {
                    if (_data[_pos] != 0xFF)
                    {
                        b = _data[_pos++];
                        real = true;
                    }
                    else if (_pos + 1 < _data.Length && _data[_pos + 1] == 0x00)
                    {
                        b = 0xFF;
                        _pos += 2;
                        real = true;
                    }
                }
                if (!real)
                    _padding += 8;
                _buffer |= b << (24 - _count);
                _count += 8;
            }
        }

        public int ReadBits(int n)
        {
            if (n == 0)
                return 0;
            if (_count < n)
                Fill();
            int v = (int)(_buffer >> (32 - n));
            Consume(n);
            return v;
        }

        public int ReadBit() => ReadBits(1);

        private void Consume(int n)
        {
            _buffer <<= n;
            _count -= n;
            _padding = Math.Min(_padding, _count);
        }

        public int ReceiveExtend(int s)
        {
            if (s > 16)
                throw Error($"coefficient of {s} bits");
            int v = ReadBits(s);
            return v < 1 << (s - 1) ? v - (1 << s) + 1 : v;
        }

        public int Decode(HuffmanTable table)
        {
            if (_count < 16)
                Fill();
            uint peek = _buffer >> (32 - HuffmanTable.LookupBits);
            int entry = table.Lookup[peek];
            if (entry != 0)
            {
                Consume(entry >> 8);
                return entry & 0xFF;
            }
            uint code16 = _buffer >> 16;
            for (int length = HuffmanTable.LookupBits + 1; length <= 16; length++)
            {
                int code = (int)(code16 >> (16 - length));
                if (code <= table.MaxCode[length])
                {
                    Consume(length);
                    return table.Values[table.ValueOffset[length] + code];
                }
            }
            throw Error("invalid Huffman code");
        }
    }
}

/// <summary>A JPEG Huffman table: a lookup for codes up to <see cref="LookupBits"/> bits, canonical ranges above.</summary>
internal sealed class HuffmanTable
{
    public const int LookupBits = 9;

    /// <summary>(length &lt;&lt; 8 | symbol) per 9-bit prefix, 0 when the code is longer.</summary>
    public readonly ushort[] Lookup = new ushort[1 << LookupBits];

    public readonly int[] MaxCode = new int[17];

    /// <summary>Index into Values of length L's first code, minus that code, so Values[ValueOffset[L] + code].</summary>
    public readonly int[] ValueOffset = new int[17];

    public readonly byte[] Values;

    public HuffmanTable(ReadOnlySpan<byte> counts, ReadOnlySpan<byte> values, string? source, long offset)
    {
        Values = values.ToArray();
        int code = 0, k = 0;
        for (int length = 1; length <= 16; length++)
        {
            int n = counts[length - 1];
            ValueOffset[length] = k - code;
            for (int i = 0; i < n; i++, code++, k++)
            {
                if (code >= 1 << length)
                    throw new ImageFormatException($"Huffman table has more codes of length {length} than fit", source, offset);
                if (length <= LookupBits)
                {
                    int shift = LookupBits - length;
                    for (int fill = 0; fill < 1 << shift; fill++)
                        Lookup[(code << shift) | fill] = (ushort)((length << 8) | values[k]);
                }
            }
            MaxCode[length] = n == 0 ? -1 : code - 1;
            code <<= 1;
        }
    }
}

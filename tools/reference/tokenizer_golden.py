"""Independent reference tokenizer and golden-file writer for Graft.Models.Tokenization.

The Hugging Face `tokenizers` library cannot be installed here, so this script re-implements the parts of
its semantics that Graft supports (read from huggingface/tokenizers: models/bpe/{model,word}.rs,
pre_tokenizers/{byte_level,metaspace,split}.rs, tokenizer/added_vocabulary.rs, decoders/*.rs), written
the simple way (code points, O(n^2) merge rescans) so that it shares no structure with the C# code.

It builds three small tokenizer.json files with a tiny BPE trainer over a built-in multilingual corpus:
    qwen2_style/    byte-level BPE, Qwen2's regex, NFC, "a b" merges, ChatML special tokens
    llama3_style/   byte-level BPE, Llama 3's regex, ignore_merges, TemplateProcessing, ["a","b"] merges
    llama2_style/   SentencePiece-style BPE, byte_fallback, Prepend/Replace normalizer, <s> </s> <unk>
and writes cases.json (text -> ids, decodes) for each. It also writes the Unicode data the C# NFC/NFD
needs (src/Graft.Models/Tokenization/UnicodeNormalization.txt), since .NET's string.Normalize does nothing
under InvariantGlobalization. Run with Debian's interpreter:
    apt-get install python3-regex
    /usr/bin/python3 tools/reference/tokenizer_golden.py
"""
import json
import os
import unicodedata

import regex  # python3-regex: \p{L}, \p{N} and scoped flags, on code points (like the Rust library)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO, "tests", "Graft.Tests", "Golden", "tokenizer")

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

CORPUS = """
The quick brown fox jumps over the lazy dog. Don't panic: we've got 42 towels, and I'll bring 3.14 more.
It's a truth universally acknowledged, that a single man in possession of a good fortune must be in want of a wife.
Hello world! Hello, world. hello again, world of tokens and tokenizers; the tokenizer splits text into tokens.
Les élèves étudient la grammaire française à l'école; où est la bibliothèque? Ça va très bien, merci.
Die Straße ist nass, weil es regnet. Über den Wolken muss die Freiheit wohl grenzenlos sein.
Привет, мир! Как дела? Сегодня хорошая погода, и мы идём гулять в парк.
中文字符测试：我们今天学习自然语言处理。中文分词是一个有趣的问题。
日本語のテキストです。今日はいい天気ですね。東京は大きな都市です。
def tokenize(text):
    return [t for t in text.split() if t]  # list comprehension
for i in range(10): print(i * 2, i ** 2)
numbers: 12345, 67890, 2024-06-01, 1,000,000 and 0.5 + 0.25 = 0.75
""" * 3

TEXTS = [
    "Hello world",
    "Hello, world! How are you?",
    "don't stop, I'LL go, we've been, she'S here, they'RE THERE",
    "12345 and 3.14159 and 1,000,000",
    "a\n\n  b",
    "trailing spaces   ",
    "   leading spaces",
    "tabs\there\t\tand\t",
    "line1\r\nline2\n\nline3\n",
    "中文字符",
    "中文字符测试：我们今天学习自然语言处理。",
    "日本語のテキスト",
    "Привет, мир!",
    "emoji 😀👍🏽 and a family 👨\u200d👩\u200d👧\u200d👦!",
    "😀abc",
    "𝐇𝐞𝐥𝐥𝐨 𝟏𝟐",
    "cafe\u0301 na\u0308ive Ame\u0301lie",
    "café naïve",
    "non\u00a0breaking\u2003em space",
    "hi<|im_end|>there",
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<s>hi</s> and <unk>",
    "a [MASK] b [MASK]",
    "call  <tool>  now and the Graft graft Grafting",
    "",
    " ",
    "    ",
    "x",
    "def f(x):\n    return x**2  # comment\n",
    "'s 'S 'Re '",
    "ﬁne ligature ①②",
]


def long_text():
    """A deterministic random-ish string mixing scripts, digits, spaces and emoji (LCG, no `random`)."""
    pieces = ["the", " ", "  ", "\n", "token", "42", "3.14", "中文", "字符", "😀", "é", "e\u0301", "Привет", "!", "'ll",
              "\t", "<|im_end|>", "日本", "ß", "x" * 7, "👍🏽", ",", "ー"]
    state, out = 12345, []
    for _ in range(600):
        state = (state * 1103515245 + 12345) % (1 << 31)
        out.append(pieces[(state >> 8) % len(pieces)])
    return "".join(out)


# ---------------------------------------------------------------------------------------------- the reference

def bytes_to_unicode():
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in visible:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


BYTE_CHAR = bytes_to_unicode()
CHAR_BYTE = {c: b for b, c in BYTE_CHAR.items()}


def split_by_matches(s, matches, behavior):
    """matches: [(start, end, is_match)] covering s; returns the pieces kept by `behavior` (HF split semantics)."""
    if behavior == "Removed":
        spans = [(a, b) for a, b, m in matches if not m]
    elif behavior == "Isolated":
        spans = [(a, b) for a, b, _ in matches]
    elif behavior == "MergedWithPrevious":
        spans, prev = [], False
        for a, b, m in matches:
            if m and not prev and spans:
                spans[-1] = (spans[-1][0], b)
            else:
                spans.append((a, b))
            prev = m
    elif behavior == "MergedWithNext":
        spans, prev = [], False
        for a, b, m in reversed(matches):
            if m and not prev and spans:
                spans[-1] = (a, spans[-1][1])
            else:
                spans.append((a, b))
            prev = m
        spans.reverse()
    elif behavior == "Contiguous":
        spans, prev = [], False
        for a, b, m in matches:
            if m == prev and spans:
                spans[-1] = (spans[-1][0], b)
            else:
                spans.append((a, b))
            prev = m
    else:
        raise ValueError(behavior)
    return [s[a:b] for a, b in spans if b > a]


def regex_matches(pattern, s, invert=False):
    out, prev = [], 0
    for m in regex.finditer(pattern, s):
        if m.start() != prev:
            out.append((prev, m.start(), invert))
        out.append((m.start(), m.end(), not invert))
        prev = m.end()
    if prev != len(s):
        out.append((prev, len(s), invert))
    return out


class Reference:
    def __init__(self, spec, config=None):
        self.spec = spec
        model = spec["model"]
        self.vocab = model["vocab"]
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.ranks = {}
        for rank, merge in enumerate(model["merges"]):
            a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
            self.ranks[(a, b)] = rank
        self.added = spec["added_tokens"]
        for t in self.added:
            self.id_to_token[t["id"]] = t["content"]
        self.special = {t["content"] for t in self.added if t["special"]}

    # -- normalization
    def normalize(self, s, n=None):
        n = self.spec["normalizer"] if n is None else n
        if n is None:
            return s
        kind = n["type"]
        if kind == "Sequence":
            for inner in n["normalizers"]:
                s = self.normalize(s, inner)
            return s
        if kind in ("NFC", "NFD", "NFKC", "NFKD"):
            return unicodedata.normalize(kind, s)
        if kind == "Prepend":
            return n["prepend"] + s if s else s
        if kind == "Replace":
            return s.replace(n["pattern"]["String"], n["content"])
        raise ValueError(kind)

    # -- added tokens
    def find_added(self, s, tokens, parse_special):
        """Leftmost-longest non-overlapping matches, then single_word / lstrip / rstrip as added_vocabulary.rs."""
        pieces, start_offset, pos = [], 0, 0
        while pos < len(s):
            best = None
            for i in range(pos, len(s)):
                for t in tokens:
                    c = t["pattern"]
                    if s.startswith(c, i) and (best is None or len(c) > len(best[1]["pattern"])):
                        best = (i, t)
                if best:
                    break
            if best is None:
                break
            start, tok = best
            stop = start + len(tok["pattern"])
            pos = stop
            if not parse_special and tok["special"]:
                continue
            if tok["single_word"]:
                before_word = start > 0 and regex.match(r"\w", s[start - 1])
                after_word = stop < len(s) and regex.match(r"\w", s[stop])
                if before_word or after_word:
                    continue
            if tok["lstrip"]:
                new_start = start
                while new_start > 0 and regex.match(r"\s", s[new_start - 1]):
                    new_start -= 1
                start = max(new_start, start_offset)
            if tok["rstrip"]:
                while stop < len(s) and regex.match(r"\s", s[stop]):
                    stop += 1
            if start_offset < start:
                pieces.append((s[start_offset:start], None, start_offset == 0))
            pieces.append((s[start:stop], tok["id"], start == 0))
            start_offset = stop
        if start_offset != len(s):
            pieces.append((s[start_offset:], None, start_offset == 0))
        return pieces

    def extract_and_normalize(self, text, parse_special):
        raw = [dict(t, pattern=t["content"]) for t in self.added if not t["normalized"]]
        norm = [dict(t, pattern=self.normalize(t["content"])) for t in self.added if t["normalized"]]
        out = []
        for piece, tid, at_zero in self.find_added(text, raw, parse_special):
            if tid is not None:
                out.append((piece, tid, at_zero))
                continue
            normalized = self.normalize(piece)
            for sub, sid, sub_zero in self.find_added(normalized, norm, parse_special):
                out.append((sub, sid, at_zero and sub_zero))
        return [p for p in out if p[0]]

    # -- pre-tokenization: (string, starts at original offset 0)
    def pre_tokenize(self, pieces, p=None):
        p = self.spec["pre_tokenizer"] if p is None else p
        if p is None:
            return pieces
        kind = p["type"]
        if kind == "Sequence":
            for inner in p["pretokenizers"]:
                pieces = self.pre_tokenize(pieces, inner)
            return pieces
        out = []
        for s, at_zero in pieces:
            if kind == "Split":
                pat = p["pattern"]["Regex"] if "Regex" in p["pattern"] else regex.escape(p["pattern"]["String"])
                subs = split_by_matches(s, regex_matches(pat, s, p.get("invert", False)), p["behavior"])
            elif kind == "ByteLevel":
                if p.get("add_prefix_space", True) and not s.startswith(" "):
                    s = " " + s
                subs = split_by_matches(s, regex_matches(GPT2_PATTERN, s), "Isolated") if p.get("use_regex", True) else [s]
                subs = ["".join(BYTE_CHAR[b] for b in sub.encode("utf-8")) for sub in subs]
            elif kind == "Metaspace":
                rep = p["replacement"]
                s = s.replace(" ", rep)
                scheme = p.get("prepend_scheme", "always")
                if not s.startswith(rep) and (scheme == "always" or (scheme == "first" and at_zero)):
                    s = rep + s
                if p.get("split", True):
                    subs = split_by_matches(s, [(i, i + 1, c == rep) for i, c in enumerate(s)], "MergedWithNext")
                else:
                    subs = [s]
            else:
                raise ValueError(kind)
            out.extend((sub, at_zero and i == 0) for i, sub in enumerate(subs) if sub)
        return out

    # -- the BPE model
    def bpe(self, word):
        model = self.spec["model"]
        if model.get("ignore_merges") and word in self.vocab:
            return [self.vocab[word]]
        symbols, unk = [], None
        unk_token = model.get("unk_token")
        for ch in word:
            if ch in self.vocab:
                if unk is not None:
                    symbols.append(unk)
                    unk = None
                symbols.append(ch)
                continue
            if model.get("byte_fallback"):
                codes = ["<0x%02X>" % b for b in ch.encode("utf-8")]
                if all(c in self.vocab for c in codes):
                    symbols.extend(codes)
                    continue
            if unk_token is not None:
                if unk is not None and not model.get("fuse_unk"):
                    symbols.append(unk)
                unk = unk_token
        if unk is not None:
            symbols.append(unk)
        while len(symbols) > 1:
            best = None
            for i in range(len(symbols) - 1):
                rank = self.ranks.get((symbols[i], symbols[i + 1]))
                if rank is not None and (best is None or rank < best[0]):
                    best = (rank, i)
            if best is None:
                break
            i = best[1]
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        return [self.vocab[s] for s in symbols]

    def post_process(self, ids, p=None):
        p = self.spec["post_processor"] if p is None else p
        if p is None:
            return ids
        kind = p["type"]
        if kind == "Sequence":
            for inner in p["processors"]:
                ids = self.post_process(ids, inner)
            return ids
        if kind == "ByteLevel":
            return ids
        if kind == "TemplateProcessing":
            out = []
            for item in p["single"]:
                if "Sequence" in item:
                    out.extend(ids)
                else:
                    out.extend(p["special_tokens"][item["SpecialToken"]["id"]]["ids"])
            return out
        raise ValueError(kind)

    def encode(self, text, add_special=True, parse_special=True):
        ids = []
        for piece, tid, at_zero in self.extract_and_normalize(text, parse_special):
            if tid is not None:
                ids.append(tid)
            else:
                for word, _ in self.pre_tokenize([(piece, at_zero)]):
                    ids.extend(self.bpe(word))
        return self.post_process(ids) if add_special else ids

    # -- decoding
    def decode_chain(self, tokens, d):
        kind = d["type"]
        if kind == "Sequence":
            for inner in d["decoders"]:
                tokens = self.decode_chain(tokens, inner)
            return tokens
        if kind == "ByteLevel":
            data = b"".join(bytes(CHAR_BYTE[c] for c in t) if all(c in CHAR_BYTE for c in t) else t.encode("utf-8")
                            for t in tokens)
            return [data.decode("utf-8", errors="replace")]
        if kind == "Replace":
            return [t.replace(d["pattern"]["String"], d["content"]) for t in tokens]
        if kind == "ByteFallback":
            out, pending = [], b""
            def flush():
                try:
                    out.append(pending.decode("utf-8"))
                except UnicodeDecodeError:
                    out.extend(["\ufffd"] * len(pending))
            for t in tokens:
                if len(t) == 6 and t.startswith("<0x") and t.endswith(">") and all(c in "0123456789abcdefABCDEF" for c in t[3:5]):
                    pending += bytes([int(t[3:5], 16)])
                    continue
                if pending:
                    flush()
                    pending = b""
                out.append(t)
            if pending:
                flush()
            return out
        if kind == "Fuse":
            return ["".join(tokens)]
        if kind == "Strip":
            out = []
            for t in tokens:
                a, b = 0, len(t)
                while a < d["start"] and a < len(t) and t[a] == d["content"]:
                    a += 1
                for i in range(d["stop"]):
                    if b - 1 >= a and t[b - 1] == d["content"]:
                        b -= 1
                    else:
                        break
                out.append(t[a:b])
            return out
        if kind == "Metaspace":
            rep = d["replacement"]
            never = d.get("prepend_scheme", "always") == "never"
            return ["".join(("" if i == 0 and not never else " ") if c == rep else c for c in t) for i, t in enumerate(tokens)]
        raise ValueError(kind)

    def decode(self, ids, skip_special=False):
        tokens = [self.id_to_token[i] for i in ids if not (skip_special and self.id_to_token[i] in self.special)]
        return "".join(self.decode_chain(tokens, self.spec["decoder"]))


# ---------------------------------------------------------------------------------------------- the builders

def train(words, merges_wanted):
    """words: {tuple of symbols: count}. Greedy BPE: most frequent pair, ties by the smaller pair."""
    words = dict(words)
    merges = []
    for _ in range(merges_wanted):
        counts = {}
        for w, n in words.items():
            for pair in zip(w, w[1:]):
                counts[pair] = counts.get(pair, 0) + n
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        if counts[pair] < 2:
            break
        merges.append(pair)
        merged = {}
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == pair:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] = merged.get(tuple(out), 0) + n
        words = merged
    return merges


def added(tid, content, special=True, single_word=False, lstrip=False, rstrip=False, normalized=False):
    return {"id": tid, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": normalized, "special": special}


def byte_level_spec(pattern, llama3):
    corpus = unicodedata.normalize("NFC", CORPUS)
    words = {}
    for m in regex.finditer(pattern, corpus):
        w = tuple(BYTE_CHAR[b] for b in m.group().encode("utf-8"))
        words[w] = words.get(w, 0) + 1
    merges = train(words, 400)
    vocab = {BYTE_CHAR[b]: b for b in range(256)}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    if llama3:
        # Whole words with no merge path: only ignore_merges can emit them in one piece.
        for extra in [" tokenizer", " Graft", "中文", "Hello"]:
            vocab.setdefault("".join(BYTE_CHAR[b] for b in extra.encode("utf-8")), len(vocab))
    n = len(vocab)
    split = {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False}
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    if llama3:
        added_tokens = [added(n, "<|begin_of_text|>"), added(n + 1, "<|end_of_text|>"), added(n + 2, "<|eot_id|>")]
        post = {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [n], "tokens": ["<|begin_of_text|>"]}}}]}
        normalizer = None
        merge_list = [[a, b] for a, b in merges]
    else:
        added_tokens = [added(n, "<|endoftext|>"), added(n + 1, "<|im_start|>"), added(n + 2, "<|im_end|>"),
                        added(n + 3, "<tool>", special=False, lstrip=True, rstrip=True),
                        added(n + 4, "Graft", special=False, single_word=True, normalized=True)]
        post = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
        normalizer = {"type": "NFC"}
        merge_list = [a + " " + b for a, b in merges]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens, "normalizer": normalizer,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [split, byte_level]},
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": llama3,
                  "vocab": vocab, "merges": merge_list},
    }


def sentencepiece_spec():
    text = unicodedata.normalize("NFC", CORPUS)
    words = {}
    for w in ("▁" + text.replace(" ", "▁").replace("\n", "▁")).split("▁"):
        if w:
            key = tuple("▁" + w)
            words[key] = words.get(key, 0) + 1
    char_counts = {}
    for w, n in words.items():
        for c in w:
            char_counts[c] = char_counts.get(c, 0) + n
    # Rare characters stay out of the vocabulary so that byte_fallback is exercised.
    chars = sorted(c for c, n in char_counts.items() if n >= 6)
    words = {w: n for w, n in words.items() if all(c in chars for c in w)}
    merges = train(words, 300)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>"),
                         added(len(vocab), "[MASK]", special=False, normalized=True)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": [a + " " + b for a, b in merges]},
    }


def write_case(folder, spec, config):
    path = os.path.join(OUT, folder)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False, indent=1)
    with open(os.path.join(path, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    ref = Reference(spec)
    cases = []
    for text in TEXTS + [long_text()]:
        for add_special, parse_special in [(True, True), (False, True), (True, False)]:
            ids = ref.encode(text, add_special, parse_special)
            cases.append({"text": text, "add_special_tokens": add_special, "parse_special_tokens": parse_special,
                          "ids": ids, "decoded": ref.decode(ids), "decoded_skip_special": ref.decode(ids, True)})
    with open(os.path.join(path, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, separators=(",", ":"))
    print(folder, "vocab", len(spec["model"]["vocab"]), "merges", len(spec["model"]["merges"]), "cases", len(cases))


def write_normalization_data():
    """Lines `code;combining class;canonical decomposition;c if the pair composes back` (Python's Unicode data)."""
    lines = ["# Generated by tools/reference/tokenizer_golden.py from Python's unicodedata %s; do not edit."
             % unicodedata.unidata_version]
    for cp in range(0x110000):
        ch = chr(cp)
        if 0xAC00 <= cp <= 0xD7A3:
            continue  # Hangul syllables decompose algorithmically
        decomposition = unicodedata.decomposition(ch)
        canonical = [] if not decomposition or decomposition.startswith("<") else decomposition.split()
        ccc = unicodedata.combining(ch)
        if not canonical and ccc == 0:
            continue
        composes = len(canonical) == 2 and unicodedata.normalize("NFC", ch) == ch
        lines.append("%04X;%d;%s;%s" % (cp, ccc, " ".join(canonical), "c" if composes else ""))
    path = os.path.join(REPO, "src", "Graft.Models", "Tokenization", "UnicodeNormalization.txt")
    with open(path, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")


def main():
    write_normalization_data()
    write_case("qwen2_style", byte_level_spec(QWEN2_PATTERN, llama3=False),
               {"bos_token": None, "eos_token": "<|im_end|>", "add_bos_token": False,
                "chat_template": "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"})
    write_case("llama3_style", byte_level_spec(LLAMA3_PATTERN, llama3=True),
               {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})
    write_case("llama2_style", sentencepiece_spec(),
               {"bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False, "normalized": False,
                              "rstrip": False, "single_word": False},
                "eos_token": "</s>", "add_bos_token": True, "add_eos_token": False})


if __name__ == "__main__":
    main()

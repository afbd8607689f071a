"""SentencePiece helpers for the import oracles: train a tiny Llama-style tokenizer.model with Debian's
python3-sentencepiece, and convert a .model into the tokenizer.json transformers' LlamaConverter writes
(SentencePiece BPE with byte fallback: Prepend + Replace normalizer, merges ordered by piece score, BOS added).
"""
import json
import os

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as pb

CORPUS = [
    "A chat between a curious user and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "USER: What is in this picture? ASSISTANT: A red square above a blue circle.",
    "Image: the cat sat on the mat, 12 times in 2024.",
    "Describe the image in detail. There are three shapes: a triangle, a square and a circle.",
    "Question: Which object is larger? Answer: The green one, because it covers more area.",
    "Ünïcödé wörds, ça va? 日本語 テキスト and emoji 🙂 too.",
]


def train(folder, vocab_size=400):
    os.makedirs(folder, exist_ok=True)
    corpus = os.path.join(folder, ".corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        for _ in range(20):
            for line in CORPUS:
                f.write(line + "\n")
    prefix = os.path.join(folder, "tokenizer")
    spm.SentencePieceTrainer.train(
        input=corpus, model_prefix=prefix, vocab_size=vocab_size, model_type="bpe", byte_fallback=True, character_coverage=1.0,
        add_dummy_prefix=True, normalization_rule_name="identity", split_digits=True, allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2)
    os.remove(corpus)
    os.remove(prefix + ".vocab")
    return prefix + ".model"


def llama_tokenizer_json(model_path, added=()):
    """tokenizer.json as transformers' LlamaConverter (legacy=True, add_bos_token=True) writes it for a .model."""
    proto = pb.ModelProto()
    with open(model_path, "rb") as f:
        proto.ParseFromString(f.read())
    pieces = [(p.piece, p.score) for p in proto.pieces]
    vocab = {piece: i for i, (piece, _) in enumerate(pieces)}
    merges = []
    for merge, score in pieces:
        local = [(merge[:i], merge[i:], score) for i in range(1, len(merge)) if merge[:i] in vocab and merge[i:] in vocab]
        merges.extend(sorted(local, key=lambda x: (vocab[x[0]], vocab[x[1]])))
    merges = [(l, r) for l, r, _ in sorted(merges, key=lambda m: m[2], reverse=True)]

    def token(i, content):
        return {"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}

    added_tokens = [token(0, "<unk>"), token(1, "<s>"), token(2, "</s>")] + [token(i, c) for i, c in added]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens,
        "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
                  "byte_fallback": True, "ignore_merges": False, "vocab": vocab, "merges": [f"{l} {r}" for l, r in merges]},
    }


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")

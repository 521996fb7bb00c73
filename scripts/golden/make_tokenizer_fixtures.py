#!/usr/bin/env python3
"""tokenizer.json fixtures for the Hugging Face folder tokenizer (src/models/tokenizer_hf.cpp).

No Llama-3, Qwen2 or Phi-3.5 vocabulary is available offline, so this trains small BPE
tokenizers with the `tokenizers` package in exactly those families' configurations and writes
them with the ids `tokenizers` gives for the 2,054 strings of tests/golden/smollm2_tokenizer.jsonl:

  tests/golden/tok_llama3/  byte-level BPE, Llama-3's Split regex (\\p{N}{1,3}), ignore_merges
  tests/golden/tok_qwen2/   byte-level BPE, Qwen2's Split regex (\\p{N} alone)
  tests/golden/tok_spm/     SentencePiece-style BPE as Llama-2/Phi-3 ship it: normalizer
                            Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, byte fallback
                            <0x00>..<0xFF>, <unk>/<s>/</s>
  tests/golden/tok_metaspace/  the same vocabulary with the newer Metaspace pre-tokenizer form

Each folder holds tokenizer.json, tokenizer_config.json (bos/eos) and expected.json
({"ids": [...per string...], "decoded": {index: text where decode(ids) != the string}}). Usage: python3 scripts/golden/make_tokenizer_fixtures.py
(needs tokenizers; a few seconds on a CPU).
"""
import json
import pathlib

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
         r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def corpus():
    strings = [json.loads(line)["text"] for line in open(GOLDEN / "smollm2_tokenizer.jsonl", encoding="utf-8")]
    return strings


def byte_level(pattern, ignore_merges, strings, specials):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(strings * 3, trainer=trainer)
    return tok


def sentencepiece_like(strings, metaspace):
    # Train with whitespace splitting so that no merge crosses a "▁" (as SentencePiece), then
    # rebuild the vocabulary in Llama-2's layout: <unk> <s> </s> <0x00>..<0xFF>, then the pieces.
    base = Tokenizer(models.BPE(unk_token="<unk>"))
    base.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    # limit_alphabet keeps rare characters out of the vocabulary, so the fixture exercises the
    # <0xXX> byte fallback.
    trainer = trainers.BpeTrainer(vocab_size=2500, special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=150,
                                  show_progress=False)
    base.train_from_iterator(strings * 3, trainer=trainer)
    model = json.loads(base.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in sorted(model["vocab"].items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = model["merges"]
    spec = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
             "special": True} for i, c in enumerate(["<unk>", "<s>", "</s>"])
        ],
        "normalizer": None if metaspace else {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
        if metaspace else None,
        "post_processor": None,
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False} if metaspace else
        {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": vocab, "merges": merges},
    }
    return Tokenizer.from_str(json.dumps(spec))


def write(name, tok, strings, bos, eos):
    out = GOLDEN / name
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({"bos_token": bos, "eos_token": eos}) + "\n")
    ids = [tok.encode(s, add_special_tokens=False).ids for s in strings]
    # Decoding gives the input back except where the family's decoder does not (Metaspace strips
    # a leading space): only those are stored, by index.
    decoded = {str(i): tok.decode(x, skip_special_tokens=False) for i, x in enumerate(ids)}
    decoded = {i: d for i, d in decoded.items() if d != strings[int(i)]}
    (out / "expected.json").write_text(json.dumps({"ids": ids, "decoded": decoded}, ensure_ascii=False) + "\n")
    print(name, "vocab", tok.get_vocab_size(), "strings", len(strings))


def main():
    strings = corpus()
    llama_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]
    write("tok_llama3", byte_level(LLAMA3, True, strings, llama_specials), strings, "<|begin_of_text|>", "<|eot_id|>")
    write("tok_qwen2", byte_level(QWEN2, False, strings, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]), strings,
          None, "<|im_end|>")
    write("tok_spm", sentencepiece_like(strings, False), strings, "<s>", "</s>")
    write("tok_metaspace", sentencepiece_like(strings, True), strings, "<s>", "</s>")


if __name__ == "__main__":
    main()

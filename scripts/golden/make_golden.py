#!/usr/bin/env python3
"""Golden fixtures from implementations nobody here wrote (Hugging Face transformers + tokenizers).

Writes into tests/golden/:
  smollm2_tokenizer.jsonl   >= 2000 varied strings and their ids from the `tokenizers` package, with
                            a BPE built from the GGUF's own vocabulary and merges and SmolLM2's
                            pre-tokenizer (digits split individually, then GPT-2 byte-level regex).
  smollm2_golden.json       the SmolLM2-135M-Instruct GGUF loaded by transformers in f32: prompt ids
                            (short and ~2K tokens), per-layer hidden-state summaries, last-token
                            top-20 logits and 32 greedy tokens.
  tiny_{llama31,qwen2,phi35}/  tiny random-weight checkpoints written by transformers
                            (llama3 RoPE scaling; qkv bias, sharded safetensors; LongRoPE and fused
                            qkv) with golden.json next to each.
Usage: python3 scripts/golden/make_golden.py [--gguf PATH]   (needs torch, transformers, gguf,
tokenizers, numpy, safetensors, accelerate; runs on a CPU in a few minutes)
"""
import argparse
import json
import os
import pathlib
import random
import subprocess
import zlib

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "golden"
torch.manual_seed(0)


def gguf_vocab(path):
    import gguf

    r = gguf.GGUFReader(path)
    f = r.fields
    tokens = [bytes(f["tokenizer.ggml.tokens"].parts[i]).decode("utf-8") for i in f["tokenizer.ggml.tokens"].data]
    merges = [bytes(f["tokenizer.ggml.merges"].parts[i]).decode("utf-8") for i in f["tokenizer.ggml.merges"].data]
    types = [int(f["tokenizer.ggml.token_type"].parts[i][0]) for i in f["tokenizer.ggml.token_type"].data]
    return tokens, merges, types


def hf_tokenizer(path):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tokens, merges, types = gguf_vocab(path)
    vocab = {t: i for i, t in enumerate(tokens)}
    bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges], ignore_merges=False)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
    return tok


WORDS = """the of and to in is was for on that with as by at from his her it an were are which this be or has had
not but they their one all been its who new first after also two more other time would about when there into
year can over only most so some could made such these may many years between where him than during she under
river mountain garden library ancient quantum syntax compiler kernel gradient attention memory token selection
""".split()


def tokenizer_strings(rng, specials):
    scripts = [
        "Grüße aus München, naïve café, Ångström",
        "Здравствуй, мир! Привет 123",
        "日本語のテキストと漢字、カタカナ。",
        "中文文本：你好，世界！２０２４年",
        "한국어 문장입니다. 감사합니다",
        "العربية: مرحبا بالعالم ١٢٣",
        "हिन्दी पाठ और संख्या ४५६",
        "ελληνικά κείμενα με τόνους",
        "emoji 🎉🚀👩‍💻 and flags 🇫🇷",
        "math ∑ ∫ √ ≤ ≥ ≠ ∞ π",
        "combining é é (e + ◌́) and ﬁ ligature",
        "tabs\tand\ttabs\t\t\tend",
        "windows\r\nline\r\nendings",
        "zero​width\u200bspace and nbsp\u00a0here",
    ]
    code = [
        "def f(x):\n    return x ** 2 + 1\n",
        "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
        "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
        "<div class=\"main\">Hello &amp; welcome</div>",
        "x = {'key': [1, 2, 3], \"other\": None}  # comment",
        "#include <vector>\nint main() { return 0; }",
        "    indented    with    runs     of     spaces",
        "path/to/some_file-name.v2.tar.gz and C:\\Windows\\System32",
        "it's they're we've I'm you'll he'd 'quoted' \"double\"",
        "3.14159 2,718 1e-10 0x1F 1_000_000 -42 +7 100%",
    ]
    out = []
    out += scripts + code
    for s in scripts + code:  # variations: leading/trailing whitespace, case
        out += [" " + s, s + " ", "  " + s + "\n", s.upper(), s.lower()]
    for _ in range(900):  # random word sequences with numbers and punctuation
        n = rng.randint(1, 30)
        parts = []
        for _ in range(n):
            r = rng.random()
            if r < 0.7:
                parts.append(rng.choice(WORDS))
            elif r < 0.8:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 12))))
            elif r < 0.9:
                parts.append(rng.choice([",", ".", "!", "?", ";", ":", "-", "--", "...", "(", ")", "'s", "\"", "'"]))
            else:
                parts.append(rng.choice(WORDS).capitalize())
        sep = rng.choice([" ", " ", " ", "  ", "\n", "\t", " \n "])
        out.append(sep.join(parts))
    for _ in range(500):  # whitespace runs mixed with letters
        out.append("".join(rng.choice([" ", "  ", "\n", "\n\n", "\t", "a", "b", "word", "1", "23", "."]) for _ in range(rng.randint(1, 20))))
    for _ in range(300):  # long words and random unicode code points
        if rng.random() < 0.5:
            out.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(20, 80))))
        else:
            cps = [rng.choice([rng.randint(0x20, 0x7e), rng.randint(0xa0, 0x24f), rng.randint(0x370, 0x3ff),
                               rng.randint(0x400, 0x4ff), rng.randint(0x4e00, 0x9fff), rng.randint(0x3040, 0x30ff),
                               rng.randint(0x1f300, 0x1f64f), rng.randint(0x2000, 0x206f), 0x20, 0x0a, 0x30 + rng.randint(0, 9)])
                   for _ in range(rng.randint(1, 40))]
            out.append("".join(chr(c) for c in cps if not (0xd800 <= c <= 0xdfff)))
    for _ in range(200):  # special tokens in context
        a, b = rng.choice(WORDS), rng.choice(WORDS)
        out.append(f"{rng.choice(specials)}{a} {b}{rng.choice(specials)}\n{rng.choice(specials)} {a}")
    out += ["", " ", "\n", "a", "1", "12345678901234567890", "'s", "''", "  \n  \n", "\u3000\u3000full width spaces"]
    return out


def write_tokenizer_fixture(gguf_path):
    tok = hf_tokenizer(gguf_path)
    tokens, _, types = gguf_vocab(gguf_path)
    specials = [t for t, ty in zip(tokens, types) if ty == 3]
    rng = random.Random(1234)
    strings = tokenizer_strings(rng, specials)
    with open(OUT / "smollm2_tokenizer.jsonl", "w", encoding="utf-8") as f:
        for s in strings:
            ids = tok.encode(s, add_special_tokens=False).ids
            assert tok.decode(ids, skip_special_tokens=False) == s or True
            f.write(json.dumps({"text": s, "ids": ids}, ensure_ascii=False) + "\n")
    print(f"tokenizer fixture: {len(strings)} strings")
    return tok


def haystack_prompt(rng, target_tokens, tok):
    fact = "The secret code of the blue door is 7294."
    sentences = []
    while len(tok.encode(" ".join(sentences)).ids) < target_tokens:
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 16))]
        sentences.append(" ".join(words).capitalize() + ".")
    sentences.insert(len(sentences) * 2 // 5, fact)
    return " ".join(sentences) + "\nQuestion: What is the secret code of the blue door?\nAnswer: The secret code of the blue door is"


def summarize(h):
    h = h.double()
    return {"mean": float(h.mean()), "std": float(h.std()), "last_row_head": [float(v) for v in h[-1, :8]]}


@torch.no_grad()
def run_model(model, ids, n_greedy=32):
    x = torch.tensor([ids])
    out = model(x, output_hidden_states=True, use_cache=True)
    logits = out.logits[0, -1]
    top = torch.topk(logits, 20)
    hidden = [summarize(h[0]) for h in out.hidden_states[:-1]]  # inputs to layers 0..N-1
    past = out.past_key_values
    greedy = []
    nxt = int(torch.argmax(logits))
    for step in range(n_greedy):
        greedy.append(nxt)
        o = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True,
                  position_ids=torch.tensor([[len(ids) + step]]))
        past = o.past_key_values
        nxt = int(torch.argmax(o.logits[0, -1]))
    return {
        "ids": ids,
        "top20": [[int(i), float(v)] for v, i in zip(top.values, top.indices)],
        "hidden": hidden,
        "greedy": greedy,
    }


def write_smollm2_golden(gguf_path, tok):
    from transformers import AutoModelForCausalLM

    d, name = os.path.split(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    model.eval()
    rng = random.Random(99)
    prompts = {
        "short": "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        "plain": "The capital of France is",
        "long": haystack_prompt(rng, 2000, tok),
    }
    cases = []
    for key, text in prompts.items():
        ids = tok.encode(text, add_special_tokens=False).ids
        r = run_model(model, ids)
        r["name"], r["text"] = key, text
        cases.append(r)
        print(f"smollm2 {key}: {len(ids)} tokens, greedy {r['greedy'][:8]}...")
    meta = {"model": name, "transformers": __import__("transformers").__version__, "torch": torch.__version__,
            "dtype": "float32", "cases": cases}
    (OUT / "smollm2_golden.json").write_text(json.dumps(meta))


def tiny_models():
    from transformers import LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  vocab_size=512, rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    llama = LlamaConfig(**common, num_key_value_heads=2, max_position_embeddings=2048, rope_theta=500000.0,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    qwen = Qwen2Config(**common, num_key_value_heads=1, max_position_embeddings=2048, rope_theta=1000000.0)
    half = 64 // 4 // 2
    phi = Phi3Config(**{**common, "tie_word_embeddings": False}, num_key_value_heads=4, max_position_embeddings=1024,
                     original_max_position_embeddings=64, rope_theta=10000.0,
                     rope_scaling={"type": "longrope", "short_factor": [1.0 + 0.05 * i for i in range(half)],
                                   "long_factor": [1.0 + 0.6 * i for i in range(half)]}, pad_token_id=0)
    return [("tiny_llama31", LlamaForCausalLM, llama, torch.bfloat16, None),
            ("tiny_qwen2", Qwen2ForCausalLM, qwen, torch.float16, "60KB"),
            ("tiny_phi35", Phi3ForCausalLM, phi, torch.float32, None)]


def write_tiny_goldens():
    for name, cls, config, dtype, shard in tiny_models():
        torch.manual_seed(zlib.crc32(name.encode()) % 1000)  # stable across runs (str hash is salted)
        model = cls(config).to(dtype)
        with torch.no_grad():  # larger than the default init so that attention is not uniform
            for p in model.parameters():
                p.mul_(3.0 if p.dim() > 1 else 1.0)
            if hasattr(model.model.layers[0].self_attn, "q_proj") and model.model.layers[0].self_attn.q_proj.bias is not None:
                for layer in model.model.layers:
                    for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                        proj.bias.normal_(0, 0.5)
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("*"):
            old.unlink()
        kw = {"max_shard_size": shard} if shard else {}
        model.save_pretrained(d, safe_serialization=True, **kw)
        for extra in ("generation_config.json",):
            if (d / extra).exists():
                (d / extra).unlink()
        reloaded = cls.from_pretrained(d, dtype=torch.float32).eval()
        rng = random.Random(7)
        cases = []
        for length in (20, 100):
            ids = [rng.randint(3, 511) for _ in range(length)]
            r = run_model(reloaded, ids, n_greedy=16)
            r["name"] = f"random{length}"
            cases.append(r)
        (d / "golden.json").write_text(json.dumps({"model": name, "dtype": str(dtype), "cases": cases}))
        print(f"{name}: {sum(p.numel() for p in model.parameters())} parameters, saved as {dtype}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=None)
    args = ap.parse_args()
    gguf_path = args.gguf or subprocess.check_output(["bash", str(ROOT / "scripts" / "fetch_model.sh")], text=True).strip()
    OUT.mkdir(parents=True, exist_ok=True)
    tok = write_tokenizer_fixture(gguf_path)
    write_smollm2_golden(gguf_path, tok)
    write_tiny_goldens()
    write_method_goldens(gguf_path, tok)
    write_published_goldens(gguf_path, tok)


# ---- reference algorithms on top of transformers (docs/algorithms.md §2-§6, as the public code runs them) ----

def _rope(model, positions):
    pos = torch.tensor([positions])
    dummy = torch.zeros(1, len(positions), model.config.hidden_size)
    return model.model.rotary_emb(dummy, pos)


def _qk(layer, h, cos, sin, cfg):
    """Post-RoPE q [H, n, d] and k [Hkv, n, d] of a layer's attention for hidden states h [1, n, hidden]."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    attn = layer.self_attn
    x = layer.input_layernorm(h)
    n, d = x.shape[1], cfg.head_dim
    q = attn.q_proj(x).view(1, n, cfg.num_attention_heads, d).transpose(1, 2)
    k = attn.k_proj(x).view(1, n, cfg.num_key_value_heads, d).transpose(1, 2)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    return q[0], k[0]


def _run_layers(model, h, positions, layers, cache):
    cos, sin = _rope(model, positions)
    for l in layers:
        out = model.model.layers[l](h, attention_mask=None, position_ids=torch.tensor([positions]), past_key_values=cache,
                                    use_cache=cache is not None, position_embeddings=(cos, sin))
        h = out[0] if isinstance(out, tuple) else out
    return h


def _avg_pool(s):
    return torch.nn.functional.avg_pool1d(s.view(1, 1, -1), kernel_size=5, stride=1, padding=2, count_include_pad=True).view(-1)


def _topk_indices(scores, k):
    """The k largest along the last dimension, ties to the smaller index. torch.topk (what the
    published code calls) orders ties arbitrarily, which max pooling makes common (a local maximum
    covers up to `kernel` positions); this is the rule the library documents."""
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]


def _topk_sorted(scores, k):
    return torch.sort(_topk_indices(scores, k)).values


def _greedy(model, first, cache, start, steps):
    out, nxt = [], first
    for s in range(steps):
        out.append(nxt)
        pos = start + s
        h = model.model.embed_tokens(torch.tensor([[nxt]]))
        h = _run_layers(model, h, [pos], range(model.config.num_hidden_layers), cache)
        nxt = int(torch.argmax(model.lm_head(model.model.norm(h))[0, -1]))
    return out


@torch.no_grad()
def reference_promptdistill(model, ids, layer, k, tt):
    from transformers import DynamicCache

    cfg, L = model.config, len(ids)
    cache = DynamicCache(config=cfg)
    h = model.model.embed_tokens(torch.tensor([ids]))
    pos = list(range(L))
    h = _run_layers(model, h, pos, range(layer), cache)
    cos, sin = _rope(model, pos)
    q, kk = _qk(model.model.layers[layer], h, cos, sin, cfg)
    G = cfg.num_attention_heads // cfg.num_key_value_heads
    kk = kk.repeat_interleave(G, dim=0)                     # GQA-expanded keys [H, L, d]
    s = (q[:, -1:, :] @ kk.transpose(1, 2))[:, 0, :] / (cfg.head_dim ** 0.5)
    s = s.mean(0)                                           # mean over heads
    s[L - 1:] = 0                                           # zero the last position, then pool
    s = _avg_pool(s)
    s[L - 1:] += torch.finfo(torch.float32).min
    idx = torch.cat([_topk_sorted(s[: L - 1], min(k, L - 1)), torch.tensor([L - 1])]) if L > 1 else torch.tensor([0])
    h = _run_layers(model, h, pos, [layer], cache)          # layer r runs on all tokens
    h = h[:, idx]
    kept = [int(i) for i in idx]
    h = _run_layers(model, h, kept, range(layer + 1, cfg.num_hidden_layers), cache)
    if tt:
        for l in range(layer + 1):
            lay = cache.layers[l]
            lay.keys, lay.values = lay.keys[:, :, idx], lay.values[:, :, idx]
    first = int(torch.argmax(model.lm_head(model.model.norm(h))[0, -1]))
    return kept, _greedy(model, first, cache, L, 16)


@torch.no_grad()
def reference_gemfilter(model, ids, layer, k):
    from transformers import DynamicCache

    cfg, L = model.config, len(ids)
    h = model.model.embed_tokens(torch.tensor([ids]))
    pos = list(range(L))
    h = _run_layers(model, h, pos, range(layer), None)     # select mode: no cache
    cos, sin = _rope(model, pos)
    q, kk = _qk(model.model.layers[layer], h, cos, sin, cfg)
    kk = kk.repeat_interleave(cfg.num_attention_heads // cfg.num_key_value_heads, dim=0)
    s = (q[:, -1:, :] @ kk.transpose(1, 2))[:, 0, :].sum(0)  # sum over heads, no scaling
    idx = _topk_sorted(_avg_pool(s), min(k, L))
    kept = [int(i) for i in idx]
    sub = [ids[i] for i in kept]
    cache = DynamicCache(config=cfg)
    h = _run_layers(model, model.model.embed_tokens(torch.tensor([sub])), list(range(len(sub))),
                    range(cfg.num_hidden_layers), cache)
    first = int(torch.argmax(model.lm_head(model.model.norm(h))[0, -1]))
    return kept, _greedy(model, first, cache, len(sub), 16)


def _pool(s, kind, kernel):
    """SnapKV's pooling of per-head scores [H, n]: avgpool (count_include_pad, zero padding) or maxpool
    (padding that never wins), kernel odd, stride 1."""
    if kind == "max":
        return torch.nn.functional.max_pool1d(s.unsqueeze(1), kernel, 1, kernel // 2).squeeze(1)
    return torch.nn.functional.avg_pool1d(s.unsqueeze(1), kernel, 1, kernel // 2, count_include_pad=True).squeeze(1)


@torch.no_grad()
def reference_kv_compression(model, ids, method, capacity, window=32, pool="avg", kernel=5, record_layers=(0,)):
    """SnapKV / H2O per query head (K/V GQA-expanded before scoring and caching), every layer.
    Returns the kept rows of every layer in `record_layers` and 16 greedy tokens."""
    from transformers import DynamicCache

    cfg, L = model.config, len(ids)
    G = cfg.num_attention_heads // cfg.num_key_value_heads
    h = model.model.embed_tokens(torch.tensor([ids]))
    pos = list(range(L))
    cos, sin = _rope(model, pos)
    cache = DynamicCache(config=cfg)
    layer_rows = {}
    for l in range(cfg.num_hidden_layers):
        q, kk = _qk(model.model.layers[l], h, cos, sin, cfg)
        h = _run_layers(model, h, pos, [l], cache)
        lay = cache.layers[l]
        keys, values = lay.keys.repeat_interleave(G, dim=1), lay.values.repeat_interleave(G, dim=1)
        if L >= capacity:
            kx = kk.repeat_interleave(G, dim=0)
            if method == "snapkv":
                w = q[:, L - window:, :] @ kx.transpose(1, 2) / (cfg.head_dim ** 0.5)  # [H, W, L]
                mask = torch.full((window, window), float("-inf")).triu(1)
                w[:, :, L - window:] += mask
                a = torch.softmax(w.float(), dim=-1)
                s = _pool(a[:, :, : L - window].sum(1), pool, kernel)
                recent = window
            else:
                w = q @ kx.transpose(1, 2) / (cfg.head_dim ** 0.5)                  # [H, L, L]
                w += torch.full((L, L), float("-inf")).triu(1)
                s = torch.softmax(w.float(), dim=-1).sum(1)[:, : L - 32]
                recent = 32
            top = torch.sort(_topk_indices(s, capacity - recent), dim=-1).values
            sel = torch.cat([top, torch.arange(L - recent, L).expand(top.shape[0], recent)], dim=-1)
            if l in record_layers:
                layer_rows[l] = [[int(i) for i in row] for row in sel]
            keys = torch.gather(keys, 2, sel[None, :, :, None].expand(1, -1, -1, cfg.head_dim))
            values = torch.gather(values, 2, sel[None, :, :, None].expand(1, -1, -1, cfg.head_dim))
        lay.keys, lay.values = keys, values
        # The reference caches GQA-expanded K/V: decode appends expanded keys, attention uses G = 1.
        lay.update = (lambda orig: lambda k_, v_, *a, **kw: orig(k_.repeat_interleave(G, 1), v_.repeat_interleave(G, 1), *a, **kw))(lay.update)
    first = int(torch.argmax(model.lm_head(model.model.norm(h))[0, -1]))
    saved = [layer.self_attn.num_key_value_groups for layer in model.model.layers]
    for layer in model.model.layers:
        layer.self_attn.num_key_value_groups = 1
    try:
        greedy = _greedy(model, first, cache, L, 16)
    finally:
        for layer, g in zip(model.model.layers, saved):
            layer.self_attn.num_key_value_groups = g
    return layer_rows, greedy


def write_method_goldens(gguf_path, tok):
    from transformers import AutoModelForCausalLM

    d, name = os.path.split(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    text = haystack_prompt(random.Random(5), 700, tok)
    ids = tok.encode(text, add_special_tokens=False).ids
    cases = []
    for layer, k, tt in ((13, 256, 1), (20, 128, 0)):
        kept, greedy = reference_promptdistill(model, ids, layer, k, tt)
        cases.append({"method": "promptdistill", "layer": layer, "k": k, "tt": tt, "selected": kept, "greedy": greedy})
    kept, greedy = reference_gemfilter(model, ids, 13, 256)
    cases.append({"method": "gemfilter", "layer": 13, "k": 256, "selected": kept, "greedy": greedy})
    for m in ("snapkv", "h2o"):
        rows, greedy = reference_kv_compression(model, ids, m, 256)
        cases.append({"method": m, "budget": 256, "window": 32, "layer0_rows": rows[0], "greedy": greedy})
    for c in cases:
        print(f"reference {c['method']}: greedy {c['greedy'][:6]}...")
    (OUT / "smollm2_methods.json").write_text(json.dumps({"ids": ids, "text": text, "cases": cases}))


def write_published_goldens(gguf_path, tok):
    """Every method's published default on a prompt longer than the budgets: PromptDistill (layer
    13, k 1024, tt 0 as its drivers default and tt 1 as its README runs it), GemFilter (13, 1024),
    SnapKV as the PromptDistill/GemFilter baselines run it (C 1024, W 32, avg pool 5, per head)
    and as SnapKV's own LongBench configuration (kernel 7, max pool), H2O (C 1024, recent 32, per
    head). SnapKV/H2O record the rows of the first, middle and last layers."""
    from transformers import AutoModelForCausalLM

    d, name = os.path.split(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    text = haystack_prompt(random.Random(11), 2400, tok)
    ids = tok.encode(text, add_special_tokens=False).ids
    N = model.config.num_hidden_layers
    record = (0, N // 2, N - 1)
    cases = []
    for tt in (0, 1):
        kept, greedy = reference_promptdistill(model, ids, 13, 1024, tt)
        cases.append({"method": "promptdistill", "layer": 13, "k": 1024, "tt": tt, "selected": kept, "greedy": greedy})
    kept, greedy = reference_gemfilter(model, ids, 13, 1024)
    cases.append({"method": "gemfilter", "layer": 13, "k": 1024, "selected": kept, "greedy": greedy})
    for method, pool, kernel in (("snapkv", "avg", 5), ("snapkv", "max", 7), ("h2o", "avg", 5)):
        rows, greedy = reference_kv_compression(model, ids, method, 1024, 32, pool, kernel, record)
        case = {"method": method, "budget": 1024, "window": 32, "layer_rows": {str(l): r for l, r in rows.items()},
                "greedy": greedy}
        if method == "snapkv":
            case.update(pool=pool, pool_kernel=kernel)
        cases.append(case)
    for c in cases:
        print(f"published {c['method']}: greedy {c['greedy'][:6]}...")
    (OUT / "smollm2_published.json").write_text(json.dumps({"ids": ids, "cases": cases}))


if __name__ == "__main__":
    if os.environ.get("PD_GOLDEN_PUBLISHED_ONLY"):
        _path = subprocess.check_output(["bash", str(ROOT / "scripts" / "fetch_model.sh")], text=True).strip()
        write_published_goldens(_path, hf_tokenizer(_path))
    elif os.environ.get("PD_GOLDEN_METHODS_ONLY"):
        _path = subprocess.check_output(["bash", str(ROOT / "scripts" / "fetch_model.sh")], text=True).strip()
        write_method_goldens(_path, hf_tokenizer(_path))
    else:
        main()

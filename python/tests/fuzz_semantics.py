# SPDX-License-Identifier: Apache-2.0
"""The Selector's semantics written out in NumPy, independently of the library: what the fuzz
tests (test_fuzz_*.py) hold every successful call to. Sources: docs/algorithms.md §2-§7 and the
formulas at the top of include/promptdistill/selector.h.

PromptDistill and GemFilter scores, pooling, top-k, positions, compaction and gathers are
reproduced bit for bit: every operation below is one float32 NumPy operation (rounded to
float32, never fused), in the order the specification fixes. SnapKV/H2O softmax column sums
are computed in float64 and compared within a tolerance (their f32 exponential and canonical
reduction order are the library's own); their top-k is checked exactly against the scores the
library returned, so the ranking rule itself is still held bit for bit."""

import math

import numpy as np

F32 = np.float32


def head_terms(q_row, k, method):
    """z[h, j] for one query row: <q_h, k_{g(h), j}> (sequential over d from +0), divided by sqrt(d)
    for promptdistill. q_row [H, D] and k [L, H_kv, D] in float32; returns float32 [H, L]."""
    H, D = q_row.shape
    G = H // k.shape[1]
    kh = k[:, np.arange(H) // G, :]  # [L, H, D]: each query head's KV head
    acc = np.zeros((H, k.shape[0]), F32)
    for d in range(D):
        acc = acc + q_row[:, d][:, None] * kh[:, :, d].T
    if method == "promptdistill":
        acc = acc / F32(np.sqrt(F32(D)))
    return acc


def sum_heads(z):
    """Sequential sum over the heads (rows of z), from +0, in float32."""
    s = np.zeros(z.shape[1], F32)
    for h in range(z.shape[0]):
        s = s + z[h]
    return s


def last_token_scores(q_row, k, method):
    """promptdistill: the mean over heads of q.k/sqrt(d); gemfilter: the sum of q.k. float32 [L]."""
    s = sum_heads(head_terms(q_row, k, method))
    return s / F32(q_row.shape[0]) if method == "promptdistill" else s


def max_nan(a, b):
    """The maximum that propagates NaN, taking b on equality (as the specification's max)."""
    return np.where(np.isnan(a), a, np.where(np.isnan(b), b, np.where(a > b, a, b)))


def pool(s, mode, kernel, zero_tail=0, exclude_tail=0):
    """Pooling of a row of length L: x[j] = s[j] for j < L - zero_tail, else 0, on [0, L - E);
    avg: zero-padded sum of the kernel's taps divided by the kernel (count_include_pad); max: the
    largest in-range tap; positions [L - E, L) are copied. mode "none" copies everything."""
    L = s.shape[0]
    s = np.asarray(s, F32)
    n = 0 if mode == "none" else max(0, L - exclude_tail)
    x = np.where(np.arange(L) < L - zero_tail, s, F32(0))[:n]
    out = s.copy()
    if n == 0:
        return out
    r = kernel // 2
    acc = np.full(n, F32(0) if mode == "avg" else F32(-np.inf), F32)
    for t in range(-min(r, n), min(r, n) + 1):  # taps further out read only padding
        idx = np.arange(n) + t
        inside = (idx >= 0) & (idx < n)
        tap = np.where(inside, x[np.clip(idx, 0, n - 1)], F32(0))
        if mode == "avg":
            acc = acc + tap
        else:
            acc = np.where(inside, max_nan(acc, tap), acc)
    out[:n] = acc / F32(kernel) if mode == "avg" else acc
    return out


def topk(s, length, k, keep_last):
    """The kept positions of a row: the last `keep_last` of [0, length) and the min(k, candidates)
    best candidates of the rest (score descending, ties to the smaller index, NaN below every
    number, -0 equal to +0), ascending."""
    last = min(keep_last, length)
    candidates = range(length - last)
    ranked = sorted(candidates, key=lambda j: (bool(np.isnan(s[j])), 0.0 if np.isnan(s[j]) else -float(s[j]), j))
    return sorted(ranked[:min(k, len(ranked))] + list(range(length - last, length)))


def method_plan(method, budget, window, pool_mode):
    """(pool mode, zero_tail, exclude_tail, k, keep_last) of a method (docs/algorithms.md §1)."""
    if method == "promptdistill":
        return pool_mode, 1, 0, budget, 1
    if method == "gemfilter":
        return pool_mode, 0, 0, budget, 0
    if method == "snapkv":
        return pool_mode, 0, window, budget - window, window
    return "none", 0, 0, budget - window, window  # h2o never pools


def kept_tokens(method, budget, window, length):
    """Tokens one row keeps of a prompt of `length` (kept_tokens of docs/algorithms.md §1)."""
    _, _, _, k, keep_last = method_plan(method, budget, window, "none")
    last = min(keep_last, length)
    return last + min(k, length - last)


def softmax_column_sums(q, k, length, method):
    """SnapKV/H2O per query head, float64: s_h[j] = sum over the query rows i (row i at position
    pos_i = L - rows + i for snapkv, i for h2o; rows outside [0, L) ignored) of softmax_j(q_ih .
    k_{g(h) j} / sqrt(d)) over j <= pos_i. q [rows, H, D], k [L, H_kv, D]; returns [H, L]."""
    rows, H, D = q.shape
    G = H // k.shape[1]
    pos0 = length - rows if method == "snapkv" else 0
    q64, k64 = q.astype(np.float64), k[:length].astype(np.float64)
    sums = np.zeros((H, length))
    for i in range(rows):
        pos = pos0 + i
        if pos < 0 or pos >= length:
            continue
        for h in range(H):
            z = k64[:pos + 1, h // G] @ q64[i, h] / math.sqrt(D)
            e = np.exp(z - z.max())
            sums[h, :pos + 1] += e / e.sum()
    return sums


def pool64(s, mode, kernel, exclude_tail):
    """The pooling of `pool` in float64 (for the SnapKV tolerance comparison)."""
    L = s.shape[0]
    n = 0 if mode == "none" else max(0, L - exclude_tail)
    out = s.copy()
    r = kernel // 2
    for j in range(n):
        taps = [s[jj] for jj in range(max(0, j - r), min(n, j + r + 1))]
        out[j] = sum(taps) / kernel if mode == "avg" else max(taps)
    return out


def select_expected(q, k, length, method, budget, window, pool_mode, pool_kernel, per):
    """One request's selection: (indices per row, positions per row, exact float32 scores [rows, L]
    or None, float64 reference scores [rows, L] or None). For snapkv/h2o the indices are not
    returned (they are checked against the library's own scores with `topk`)."""
    mode, zero_tail, exclude_tail, topk_k, keep_last = method_plan(method, budget, window, pool_mode)
    if method in ("promptdistill", "gemfilter"):
        s = pool(last_token_scores(q[0], k[:length], method), mode, pool_kernel, zero_tail, exclude_tail)
        idx = topk(s, length, topk_k, keep_last)
        pos = list(range(len(idx))) if method == "gemfilter" else idx
        return [idx], [pos], s[None], None
    sums = softmax_column_sums(q, k, length, method)
    H, H_kv = q.shape[1], k.shape[1]
    if per == "kv-group":
        G = H // H_kv
        sums = np.stack([sums[g * G:(g + 1) * G].mean(axis=0) for g in range(H_kv)])
    ref = np.stack([pool64(row, mode, pool_kernel, exclude_tail) for row in sums])
    return None, None, None, ref


def compact_logical(tokens, indices_per_head, count):
    """A request's logical cache [S, H_kv, D] after compaction: token i of head h holds what token
    indices_per_head[h][i] held, for i < count; every other token is unchanged."""
    out = tokens.copy()
    for h, idx in enumerate(indices_per_head):
        out[:count, h] = tokens[np.asarray(idx[:count], np.int64), h]
    return out

# SPDX-License-Identifier: Apache-2.0
"""What the fuzz tests of the selection functions generate (Hypothesis strategies of JSON-able
specs) and the documented rules they hold the arguments to (README.md "Preconditions",
docs/python.md, the checks of include/promptdistill/detail/*_checks.h as documented): which
arguments must be refused with promptdistill.Error, every other one accepted."""

import numpy as np
import torch
from hypothesis import strategies as st

import fuzz_arrays as fa

METHODS = ("promptdistill", "gemfilter", "snapkv", "h2o")
BAD_NAMES = ("", "median", "PromptDistill", "promptdistill\x00", "x" + "é" * 30, "\udcff")
INT32_MAX = 2**31 - 1


def rare(draw, one_in):
    """True about once in `one_in` draws (shrinks towards False). The value tested is a middle one:
    Hypothesis draws the ends of a range far more often than the rest."""
    return draw(st.integers(0, one_in - 1)) == one_in // 2


def pick(draw, valid, invalid, one_in):
    """A draw from `valid`, or (once in `one_in`) one of the values `invalid`."""
    return draw(st.sampled_from(invalid)) if rare(draw, one_in) else draw(valid)


@st.composite
def storage(draw):
    kind = draw(st.sampled_from(fa.STORAGES)) if rare(draw, 3) else "contiguous"
    return {"storage": kind, "axis": draw(st.integers(0, 3)), "axis2": draw(st.integers(0, 3)),
            "offset": draw(st.sampled_from([1, 2, 4, 8, 16]))}


@st.composite
def select_specs(draw):
    method = pick(draw, st.sampled_from(METHODS), BAD_NAMES + (7,), 25)
    lib = draw(st.sampled_from(["numpy", "torch"]))
    floats = ["float32", "float16"] + (["bfloat16"] if lib == "torch" else [])
    dtype = pick(draw, st.sampled_from(floats), ["float64", "int32", "mixed"], 25)
    batched = draw(st.booleans())
    B = draw(st.integers(0, 3)) if batched else 1
    H_kv = draw(st.integers(1, 3))
    H = H_kv * draw(st.integers(1, 3)) + (1 if rare(draw, 20) else 0)
    D = pick(draw, st.sampled_from([8, 16, 32]), [4, 12, 264], 25)
    L = pick(draw, st.integers(1, 40), [0], 30)
    if method in ("promptdistill", "gemfilter"):
        rows = pick(draw, st.just(1), [0, 2], 25)
    elif method == "h2o":
        rows = pick(draw, st.just(L), [max(L - 1, 0), L + 3], 10)
    else:
        rows = pick(draw, st.integers(1, 12), [0], 25)
    lengths = None
    if batched and draw(st.booleans()):
        lengths = [pick(draw, st.integers(1, max(L, 1)), [0, L + 1, -1], 20) for _ in range(B)]
        if rare(draw, 15):
            lengths.append(L)  # one too many
    window = pick(draw, st.integers(1, 12) | st.none(), [0, -1, INT32_MAX, 2**31], 20)
    smallest = (32 if window is None else window) if method in ("snapkv", "h2o") and rare(draw, 8) is False else 0
    smallest = smallest if isinstance(smallest, int) and 0 <= smallest < 2**31 else 0
    budget = pick(draw, st.integers(smallest, smallest + 40) | st.sampled_from([0, 1, max(L - 1, 0), L, L + 1, INT32_MAX]),
                  [INT32_MAX + 1, -1, 2**62, 8.5, True, "8"], 20)
    pool = pick(draw, st.none() | st.sampled_from(["avg", "max", "none"]), ["median", 3], 25)
    pool_kernel = pick(draw, st.none() | st.sampled_from([1, 3, 5, 7, 9]), [0, 2, -1, 4097, INT32_MAX, 2**31 + 1], 12)
    per = pick(draw, st.sampled_from(["kv-group", "head"]), ["layer", ""], 30)
    return {"method": method, "lib": lib, "dtype": dtype, "batched": batched, "B": B, "H": H, "H_kv": H_kv, "D": D, "L": L,
            "rows": rows, "lengths": lengths, "lengths_storage": pick(draw, st.just("contiguous"), ["strided", "int64"], 20),
            "budget": budget, "window": window, "pool": pool, "pool_kernel": pool_kernel, "per": per,
            "q": draw(storage()), "k": draw(storage()),
            "fill": draw(st.sampled_from(["normal"] * 4 + ["integers", "specials", "constant"])),
            "seed": draw(st.integers(0, 2**32 - 1))}


def is_int(x):
    return isinstance(x, int) and not isinstance(x, bool)


def name_problems(spec):
    """The rules of the arguments that are not arrays (Python checks and method_config)."""
    method, pool, per = spec["method"], spec["pool"], spec["per"]
    if method not in METHODS:
        return f"unknown method {method!r}"
    if pool is not None and pool not in ("avg", "max", "none"):
        return f"unknown pool {pool!r}"
    if per not in ("kv-group", "head"):
        return f"unknown per {per!r}"
    budget, window, kernel = spec["budget"], spec["window"], spec["pool_kernel"]
    if not is_int(budget):
        return "budget is not an int"
    window = 32 if window is None else window
    kernel = 5 if kernel is None else kernel
    if not 1 <= window <= INT32_MAX:
        return "window outside [1, 2^31-1]"
    if not 1 <= kernel <= INT32_MAX or kernel % 2 == 0:
        return "pool kernel not odd in [1, 2^31-1]"
    if not 0 <= budget <= INT32_MAX:
        return "budget outside [0, 2^31-1]"
    if method in ("snapkv", "h2o") and budget < window:
        return "budget below the window"
    return None


def build(spec):
    """(q, k, lengths, owners) of a select-like spec; q [B?, rows, H, D], k [B?, L, H_kv, D]."""
    lib, dtype, seed = spec["lib"], spec["dtype"], spec["seed"]
    lead = (spec["B"],) if spec["batched"] else ()
    q_dtype, k_dtype = ("float32", "float16") if dtype == "mixed" else (dtype, dtype)
    q, q_owner = fa.make(spec["q"], lead + (spec["rows"], spec["H"], spec["D"]), lib, q_dtype, seed, spec["fill"])
    k, k_owner = fa.make(spec["k"], lead + (spec["L"], spec["H_kv"], spec["D"]), lib, k_dtype, seed + 1, spec["fill"])
    lengths, l_owner = None, None
    if spec["lengths"] is not None:
        n = np.array(spec["lengths"], np.int64 if spec["lengths_storage"] == "int64" else np.int32)
        if spec["lengths_storage"] == "strided":
            l_owner = np.repeat(n, 2)
            n = l_owner[::2]
        lengths = n if lib == "numpy" else torch.from_numpy(n)
        l_owner = lengths if l_owner is None else (l_owner if lib == "numpy" else lengths)
    return q, k, lengths, [q_owner, k_owner, l_owner]


def array_problems(spec, q, k, lengths, rows_checked=True):
    """The rules of the arrays (binding checks, can_implement and the per-request checks)."""
    if spec["dtype"] not in fa.FLOATS:
        return f"dtype {spec['dtype']}"
    if not spec["batched"] and lengths is not None:
        return "lengths on an unbatched call"
    B, L, rows, H, H_kv, D = spec["B"], spec["L"], spec["rows"], spec["H"], spec["H_kv"], spec["D"]
    if L == 0:
        return "empty prompt (k has no tokens)"
    if rows == 0:
        return "no query rows"
    if lengths is not None:
        if spec["lengths_storage"] == "int64" or (spec["lengths_storage"] == "strided" and len(spec["lengths"]) > 1):
            return f"lengths {spec['lengths_storage']}"
        if len(spec["lengths"]) != B:
            return "lengths of the wrong size"
    qq, kk = (q, k) if spec["batched"] else (q[None], k[None])
    if not fa.kv_view_ok(kk):
        return "k: strides or alignment"
    if not (8 <= D <= 256 and D % 8 == 0):
        return f"head_dim {D}"
    if H % H_kv:
        return "query heads not a multiple of KV heads"
    if not fa.aligned_view(qq):
        return "q: strides or alignment"
    if rows_checked and spec["method"] in ("promptdistill", "gemfilter") and rows != 1:
        return "several query rows for a last-token method"
    for length in (spec["lengths"] if lengths is not None else [L] * B):
        if not 1 <= length <= L:
            return f"length {length} outside [1, {L}]"
        if spec["method"] == "h2o" and length > rows:
            return "h2o with fewer query rows than tokens"
    return None


def same_bits(a, b):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a.shape == b.shape and np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(
        np.where(np.isnan(a), 0, a).view(np.uint32), np.where(np.isnan(b), 0, b).view(np.uint32))

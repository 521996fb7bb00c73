# SPDX-License-Identifier: Apache-2.0
"""Arrays for the fuzz tests, built from plain JSON-able specs so that a failing example can be
written down and replayed (python/tests/fuzz_regressions/): values from a seed, a dtype, a
library (NumPy or PyTorch) and a storage (contiguous, at an element offset inside a larger buffer,
another axis order, every other element, reversed along an axis, or broadcast along an axis with
stride 0). Also what the library's documented preconditions say about such a view (the
alignment and stride rules of README.md "Preconditions"), and snapshots that prove a call left the
caller's memory unchanged."""

import numpy as np
import torch

NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64, "int32": np.int32,
                "int64": np.int64, "uint8": np.uint8, "bool": np.bool_}
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64,
                "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8, "bool": torch.bool}
FLOATS = ("float32", "float16", "bfloat16")
SIZES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8, "int32": 4, "int64": 8, "uint8": 1, "bool": 1}
STORAGES = ("contiguous", "offset", "permuted", "strided", "reversed", "broadcast")


def values(seed, shape, fill):
    """float32 values: "normal", "integers" (small integers: every dot product exact), "specials"
    (normal with NaN, +-inf, -0, huge and tiny numbers sprinkled in) or "constant"."""
    rng = np.random.default_rng(seed)
    if fill == "integers":
        return rng.integers(-3, 4, shape).astype(np.float32)
    if fill == "constant":
        return np.full(shape, 0.5, np.float32)
    x = rng.standard_normal(shape).astype(np.float32)
    if fill == "specials" and x.size:
        specials = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 3e38, -3e38, 1e-40, 65504.0], np.float32)
        hit = rng.random(shape) < 0.1
        x[hit] = rng.choice(specials, int(hit.sum()))
    return x


def make(spec, shape, lib, dtype, seed, fill="normal"):
    """An array of `shape` whose values are `values(seed, ...)` in `dtype` (float values cast; ints
    for integer dtypes), stored as `spec` = {"storage", "axis", "axis2", "offset"} says. Returns
    (array, owner): owner is the buffer the array views (what a snapshot must cover)."""
    x = values(seed, shape, fill)
    storage = spec.get("storage", "contiguous")
    rank = max(len(shape), 1)
    axis, axis2 = spec.get("axis", 0) % rank, spec.get("axis2", -1) % rank
    if storage == "broadcast" and len(shape) and shape[axis] > 1:
        x = np.broadcast_to(np.take(x, [0], axis=axis), shape)
    if lib == "numpy":
        if dtype == "bfloat16":
            raise ValueError("NumPy has no bfloat16")
        return _numpy_storage(np.asarray(x).astype(NUMPY_DTYPES[dtype]), storage, axis, axis2, spec.get("offset", 1))
    x = torch.from_numpy(np.ascontiguousarray(x)).to(TORCH_DTYPES[dtype])
    return _torch_storage(x, storage, axis, axis2, spec.get("offset", 1))


def _swap(rank, axis, axis2):
    perm = list(range(rank))
    perm[axis], perm[axis2] = perm[axis2], perm[axis]
    return perm  # its own inverse


def _numpy_storage(x, storage, axis, axis2, offset):
    shape = x.shape
    if storage == "offset":
        buf = np.zeros(x.size + offset, x.dtype)
        buf[offset:] = x.ravel()
        return buf[offset:].reshape(shape), buf
    if storage == "permuted" and x.ndim > 1:
        perm = _swap(x.ndim, axis, axis2)
        stored = np.ascontiguousarray(x.transpose(perm))
        return stored.transpose(perm), stored
    if storage == "strided" and x.ndim:
        big = np.zeros(shape[:axis] + (2 * shape[axis],) + shape[axis + 1:], x.dtype)
        view = big[(slice(None),) * axis + (slice(None, None, 2),)]
        view[...] = x
        return view, big
    if storage == "reversed" and x.ndim:
        stored = np.ascontiguousarray(np.flip(x, axis))
        return np.flip(stored, axis), stored
    if storage == "broadcast":
        return x, x  # a stride-0 view (read-only in NumPy)
    x = np.ascontiguousarray(x)
    return x, x


def _torch_storage(x, storage, axis, axis2, offset):
    shape = tuple(x.shape)
    if storage == "offset":
        buf = torch.zeros(x.numel() + offset, dtype=x.dtype)
        buf[offset:] = x.reshape(-1)
        return buf[offset:].view(shape), buf
    if storage == "permuted" and x.dim() > 1:
        perm = _swap(x.dim(), axis, axis2)
        stored = x.permute(perm).contiguous()
        return stored.permute(perm), stored
    if storage == "strided" and x.dim():
        big = torch.zeros(shape[:axis] + (2 * shape[axis],) + shape[axis + 1:], dtype=x.dtype)
        view = big[(slice(None),) * axis + (slice(None, None, 2),)]
        view.copy_(x)
        return view, big
    if storage == "broadcast" and x.dim() and shape[axis] > 1:
        first = x.narrow(axis, 0, 1).contiguous()
        return first.expand(shape), first
    # PyTorch has no negative strides: "reversed" is a plain copy there.
    x = x.contiguous()
    return x, x


def element_strides(a):
    """Strides in elements, as DLPack carries them."""
    if isinstance(a, np.ndarray):
        return [s // a.itemsize for s in a.strides]
    return list(a.stride())


def data_address(a):
    return a.__array_interface__["data"][0] if isinstance(a, np.ndarray) else a.data_ptr()


def byte_size(a):
    return a.itemsize if isinstance(a, np.ndarray) else a.element_size()


def to_f32(a):
    """The values as float32 NumPy (exact for every float dtype the library takes)."""
    if isinstance(a, np.ndarray):
        return np.asarray(a, np.float32)
    return a.detach().float().numpy()


def to_numpy(a):
    return a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


class Snapshot:
    """The bytes of every buffer the caller owns, to prove a call changed nothing (or only what
    it should). Compares bit patterns, so NaNs compare equal to themselves."""

    def __init__(self, *owners):
        self.owners = [o for o in owners if o is not None]
        self.saved = [self._bytes(o).copy() for o in self.owners]

    @staticmethod
    def _bytes(o):
        if isinstance(o, np.ndarray):
            return np.ascontiguousarray(o).view(np.uint8).reshape(-1)
        if o.numel() == 0:
            return np.zeros(0, np.uint8)
        flat = torch.empty(o.numel(), dtype=o.dtype)  # packed whatever o's strides
        flat.copy_(o.detach().reshape(-1))
        return flat.view(torch.uint8).numpy()

    def unchanged(self):
        return all(np.array_equal(self._bytes(o), s) for o, s in zip(self.owners, self.saved))

    def before(self, owner):
        """The saved bytes of `owner` as an array of its dtype and shape."""
        i = next(i for i, o in enumerate(self.owners) if o is owner)
        if isinstance(owner, np.ndarray):
            return self.saved[i].view(owner.dtype).reshape(owner.shape)
        return torch.from_numpy(self.saved[i].copy()).view(owner.dtype).reshape(owner.shape)


def aligned_view(a, require_unit_last=True):
    """The q-style rule (TensorView::is_aligned(16) and the stride checks): no negative stride,
    the last dimension contiguous, the base address and the stride of every dimension of extent
    > 1 (but a unit last one) multiples of 16 bytes."""
    strides, es = element_strides(a), byte_size(a)
    if any(s < 0 for s in strides):
        return False
    if require_unit_last and a.shape[-1] > 1 and strides[-1] != 1:
        return False
    if data_address(a) % 16:
        return False
    for i, (n, s) in enumerate(zip(a.shape, strides)):
        if n > 1 and not (i == len(strides) - 1 and s == 1) and (s * es) % 16:
            return False
    return True


def kv_view_ok(a, strides=None):
    """The KV-cache rule (check_kv): head_dim contiguous, no negative stride, the base address
    and the three outer strides multiples of 16 bytes (whatever their extents)."""
    strides = element_strides(a) if strides is None else strides
    es = byte_size(a)
    if a.shape[-1] > 1 and strides[-1] != 1:
        return False
    if any(s < 0 for s in strides[:3]):
        return False
    return data_address(a) % 16 == 0 and all((s * es) % 16 == 0 for s in strides[:3])

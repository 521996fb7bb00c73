# SPDX-License-Identifier: Apache-2.0
"""What the selections share: their output shapes (computed from the shapes alone, so that the
fake implementations of the PyTorch operators use them too), one allocation of their outputs for
NumPy and PyTorch, and the checks of the arguments every Selector call takes the same way."""

import numpy as np

from . import _backends, _core
from ._errors import Error

#: Methods whose selection sums over every query head (one row per request; the tensor-parallel calls).
HEAD_SUM_METHODS = ("promptdistill", "gemfilter")


def select_geometry(method, budget, window, pool, pool_kernel, per, num_q_heads, num_kv_heads, length):
    """(rows per request, tokens kept of a prompt of ``length``): the output shapes of ``select``."""
    return _backends.call(_core.geometry, method, budget, window, pool, pool_kernel, per, num_q_heads, num_kv_heads, length)


def finish_geometry(method, budget, pool, pool_kernel, length):
    """(1, tokens kept of ``length``): the output shapes of ``finish_select``."""
    if method not in HEAD_SUM_METHODS:  # let the library name the problem
        return 1, 0
    return select_geometry(method, budget, 32, pool, pool_kernel, "kv-group", 1, 1, length)


def selection_outputs(like, batch, rows, kept, length):
    """The outputs of a selection, of ``like``'s library and device: indices and positions int32
    ``[B, rows, kept]`` filled with -1, counts int32 ``[B, rows]`` and float32 scores
    ``[B, rows, length]`` filled with 0."""
    if _backends.is_torch(like):
        torch = _backends.torch_module()
        full = lambda shape, value, dtype: torch.full(shape, value, dtype=dtype, device=like.device)  # noqa: E731
        i32, f32 = torch.int32, torch.float32
    else:
        full = lambda shape, value, dtype: np.full(shape, value, dtype)  # noqa: E731
        i32, f32 = np.int32, np.float32
    return (full((batch, rows, kept), -1, i32), full((batch, rows), 0, i32), full((batch, rows, kept), -1, i32),
            full((batch, rows, length), 0, f32))


#: The default of an argument that must be given.
REQUIRED = object()


def require_int(name, value, default=REQUIRED):
    """``value`` (or ``default`` when None) as an int: a Python or NumPy integer within int64. An
    argument without a default must be given (None is an Error, not a value for C++)."""
    if value is None:
        if default is REQUIRED:
            raise Error(f"{name} must be an int, got None")
        return default
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise Error(f"{name} must be an int, got {type(value).__name__}")
    if not -(2**63) <= value < 2**63:
        raise Error(f"{name} = {value} does not fit int64")
    return int(value)


def require_str(name, value, default=None):
    """``value`` (or ``default`` when None) as a string that can cross into C++ (UTF-8, no NUL):
    its meaning is checked by the library, whose message lists the accepted spellings. A string
    that cannot be encoded would be a TypeError of the extension module or a RuntimeError of a
    PyTorch operator."""
    if value is None:
        return default
    if not isinstance(value, str):
        raise Error(f"{name} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Error(f"{name} {ascii(value)[:60]} is not a valid name (it cannot be encoded as UTF-8)") from None
    if "\0" in value:
        raise Error(f"{name} {ascii(value)[:60]} is not a valid name (it contains a NUL character)")
    return value


def batched_form(arrays, name, batched, lengths, lengths_error):
    """A call's main arrays in the batched form: when not ``batched`` each gets a leading batch of 1
    (and ``lengths``, which only the batched form takes, must be None: otherwise ``lengths_error``).
    PyTorch inputs are detached and the device of the first (called ``name``) checked. Returns the arrays and the int32
    ``lengths`` of their library and device, by default every request the full length of the last
    array's dimension 1."""
    if not batched:
        if lengths is not None:
            raise Error(lengths_error)
        arrays = tuple(a[None] for a in arrays)
    full = arrays[-1]
    if _backends.is_torch(arrays[0]):
        torch = _backends.torch_module()
        _backends.module_for(arrays[0], name)  # a device we do not run on fails here, not in a fake kernel
        arrays = tuple(a.detach() for a in arrays)
        if lengths is None:
            lengths = torch.full((full.shape[0],), full.shape[1], dtype=torch.int32, device=arrays[0].device)
    elif lengths is None:
        lengths = np.full((full.shape[0],), full.shape[1], np.int32)
    return (*arrays, lengths)

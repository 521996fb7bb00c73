# SPDX-License-Identifier: Apache-2.0
"""Which extension module runs an array, and how arrays, outputs and workspaces are handled for
each array library: NumPy arrays run on the CPU reference backend, PyTorch tensors on the backend
of their device (CUDA tensors on their current stream, every buffer from PyTorch's allocator)."""

import sys

import numpy as np

from . import _core
from ._errors import Error

try:  # the CUDA backend is a separate module: a machine without a CUDA runtime still imports us
    from . import _cuda
    CUDA_PROBLEM = None
except ImportError as e:  # not built (no nvcc at build time) or its runtime libraries are missing
    _cuda = None
    CUDA_PROBLEM = (f"the CUDA backend could not be loaded ({e})" if "No module named" not in str(e)
                    else "this build has no CUDA backend (nvcc was not found when it was built)")

STATUS_BYTES = _core.STATUS_BYTES
_ALIGNMENT = 256  # the library's workspace alignment (WorkspacePlanner::kAlignment)


def torch_module():
    """PyTorch if it has been imported (we never import it for a NumPy caller)."""
    return sys.modules.get("torch")


def is_torch(x):
    torch = torch_module()
    return torch is not None and isinstance(x, torch.Tensor)


def as_array(x, name):
    """NumPy arrays and PyTorch tensors as they are; any other DLPack producer (CuPy, JAX, ...) as a
    NumPy array (host memory) or a PyTorch tensor (device memory), without a copy."""
    if isinstance(x, np.ndarray):
        if x.dtype.hasobject or not x.dtype.isnative:
            raise Error(f"{name} has dtype {x.dtype}; pass native-endian numeric arrays", "unsupported")
        return x
    if is_torch(x):
        return x
    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        if x.__dlpack_device__()[0] == 1:  # kDLCPU
            return np.from_dlpack(x)
        try:
            import torch
        except ImportError as e:
            raise Error(f"{name} lives on a GPU; device arrays other than PyTorch's need PyTorch installed ({e})") from None
        return torch.utils.dlpack.from_dlpack(x)
    raise Error(f"{name} must be an array (NumPy, PyTorch or another DLPack producer), got {type(x).__name__}")


def same_kind(reference, x, name, reference_name):
    """`x` (None passes) as an array of the same library as `reference`."""
    if x is None:
        return None
    x = as_array(x, name)
    if is_torch(x) != is_torch(reference):
        kinds = ("a PyTorch tensor", "a NumPy array")
        raise Error(f"{name} is {kinds[not is_torch(x)]} but {reference_name} is {kinds[not is_torch(reference)]}: "
                    "pass the arrays of one call from one library")
    if is_torch(x) and x.device != reference.device:
        raise Error(f"{name} is on {x.device} but {reference_name} is on {reference.device}: every array of one call must be on "
                    "the same device")
    return x


def module_for(tensor, name):
    """The extension module that runs `tensor`'s device."""
    if not is_torch(tensor) or tensor.device.type == "cpu":
        return _core
    if tensor.device.type == "cuda":
        if _cuda is None:
            raise Error(f"{name} is on {tensor.device} but {CUDA_PROBLEM}", "unsupported")
        return _cuda
    raise Error(f"{name} is on {tensor.device}; promptdistill runs on the CPU and on CUDA devices", "unsupported")


def call(fn, *args):
    """A call into an extension module; arguments nanobind cannot read as DLPack arrays (object or
    byte-swapped NumPy arrays, tensors that refuse export) become Error instead of TypeError."""
    try:
        return fn(*args)
    except TypeError as e:
        raise Error(f"an argument cannot be read as an array: {e}".split("\n")[0], "unsupported") from None


def run_numpy(fn, args):
    """Size query, workspace, run: the CPU reference, synchronous (errors are raised here)."""
    need = call(fn, *args, None, 0)
    call(fn, *args, np.empty(need, np.uint8), 0)


def run_torch(fn, args, device):
    """Size query, workspace from PyTorch's allocator, run on the current stream of `device`.

    Returns the status word of the run: on CUDA a device-side copy of the start of the workspace
    (errors in device-resident data are recorded there; nothing waits for it), on the CPU zeros
    (errors were raised already)."""
    torch = torch_module()
    if device.type != "cuda":
        need = call(fn, *args, None, 0)
        call(fn, *args, torch.empty(need, dtype=torch.uint8), 0)
        return torch.zeros(STATUS_BYTES, dtype=torch.uint8)
    with torch.cuda.device(device):
        stream = torch.cuda.current_stream(device).cuda_stream
        need = call(fn, *args, None, stream)
        workspace = torch.empty(need, dtype=torch.uint8, device=device)
        call(fn, *args, workspace, stream)
        start = (-workspace.data_ptr()) % _ALIGNMENT  # where the library put the status word
        return workspace[start:start + STATUS_BYTES].clone()


def check_status(status):
    """Raises the Error a CUDA run recorded in `status` (waits for the current stream)."""
    if is_torch(status) and status.device.type == "cuda":
        torch = torch_module()
        with torch.cuda.device(status.device):
            _cuda.check_status(status, torch.cuda.current_stream(status.device).cuda_stream)

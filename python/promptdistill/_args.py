# SPDX-License-Identifier: Apache-2.0
"""Checks of the arguments that are not arrays, shared by the Python functions: every bad value
becomes promptdistill.Error here, before it reaches an extension module or a PyTorch operator
(which would raise TypeError or RuntimeError for it)."""

import numpy as np

from ._errors import Error


def require_int(name, value, optional=False):
    """`value` as a Python int that fits int64 (bool is not an int here); None passes if optional."""
    if value is None and optional:
        return None
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise Error(f"{name} must be an int, got {type(value).__name__}")
    if not -(2**63) <= value < 2**63:
        raise Error(f"{name} = {value} does not fit int64")
    return int(value)


def require_name(name, value, optional=False):
    """`value` as a string that can cross into C++ (UTF-8, no NUL); its meaning is checked by the
    library, whose message lists the accepted spellings. None passes if optional."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise Error(f"{name} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Error(f"{name} {ascii(value)[:60]} is not a valid name (it cannot be encoded as UTF-8)") from None
    if "\0" in value:
        raise Error(f"{name} {ascii(value)[:60]} is not a valid name (it contains a NUL character)")
    return value

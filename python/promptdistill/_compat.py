# SPDX-License-Identifier: Apache-2.0
"""Former names of arguments, accepted for one release with a DeprecationWarning."""

import warnings

from ._errors import Error


def renamed_argument(value, old_value, name, old_name, where):
    """The value of argument ``name`` given either under its name or under its former name
    ``old_name`` (warned about); both at once is an Error."""
    if old_value is None:
        return value
    if value is not None:
        raise Error(f"{where}: give {name}, not also {old_name} (its former name)")
    warnings.warn(f"{where}: {old_name}= is deprecated, use {name}= (the same number)", DeprecationWarning, stacklevel=3)
    return old_value

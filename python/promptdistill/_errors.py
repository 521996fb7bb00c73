# SPDX-License-Identifier: Apache-2.0
"""The package's one exception type (a module of its own: the C++ extensions import it)."""


class Error(ValueError):
    """A bad input, or a failure the library reports: the library's Status message.

    ``str(error)`` is the message ("invalid argument: budget must be >= 0, got -1");
    ``error.code`` names the Status code ("invalid argument", "shape mismatch", "unsupported", ...).
    """

    def __init__(self, message, code="invalid argument"):
        # The C++ side passes the library's full "code: message"; checks made in Python get the
        # same form.
        super().__init__(message if message.startswith(code + ": ") else f"{code}: {message}")
        self.code = code

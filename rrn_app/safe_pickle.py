"""Reading data pickles without running their code: a restricted unpickler.

A pickle names the functions and classes it needs ("globals") and the unpickler calls them, so a crafted file
can run anything (`os.system`, ...). `load` admits only the globals a data pickle needs: the built-in
containers, numbers and strings, and numpy arrays, dtypes and scalars (the numpy re-saves of the canonical
music pickles hold those). Any other global is refused with a one-line `UserError` naming the file and the
global, before it is looked up, so nothing from the file runs.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from rrn_app.option_checks import UserError

# module -> names a data pickle may load. Plain lists, dicts, tuples, strings and numbers need no global at
# all (they have their own opcodes); protocol-2 pickles name sets, frozensets and some scalars by global.
_BUILTINS = frozenset({"set", "frozenset", "list", "dict", "tuple", "int", "float", "complex", "str", "bytes",
                       "bytearray", "bool"})
ALLOWED: dict[str, frozenset[str]] = {
    "builtins": _BUILTINS,
    "__builtin__": _BUILTINS,   # Python 2 pickles (the canonical music files) spell builtins this way
    "_codecs": frozenset({"encode"}),   # how protocol 2 writes bytes (numpy buffers) from Python 3
    "numpy": frozenset({"ndarray", "dtype"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),   # numpy >= 2 writes this name
    "numpy.core.numeric": frozenset({"_frombuffer"}),    # protocol 5 arrays
    "numpy._core.numeric": frozenset({"_frombuffer"}),
}


class RefusedGlobal(UserError, pickle.UnpicklingError):
    """A pickle asked for a global outside `ALLOWED` (it may be crafted to run code)."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path, fix: str):
        super().__init__(file, encoding="latin1")   # latin1: Python 2 byte strings (numpy buffers) load as bytes
        self.path, self.fix = path, fix

    def find_class(self, module: str, name: str):
        if name not in ALLOWED.get(module, ()):
            raise RefusedGlobal(
                f"{self.path}: refused to load {module}.{name} from this pickle (a data pickle may hold only "
                f"lists, dicts, tuples, numbers, strings and numpy arrays; this file may be crafted to run "
                f"code, and nothing from it was run). {self.fix}".rstrip())
        return super().find_class(module, name)


def load(path: str | Path, fix: str = ""):
    """The object in the pickle at `path`, admitting only `ALLOWED` globals (else `RefusedGlobal`).

    `fix` ends the refusal message: how to get a trustworthy copy of the file.
    """
    path = Path(path)
    with open(path, "rb") as file:
        return _RestrictedUnpickler(file, path, fix).load()


def loads(data: bytes, path: str | Path = "<bytes>", fix: str = ""):
    """`load` for a pickle already in memory (`path` names it in messages)."""
    return _RestrictedUnpickler(io.BytesIO(data), Path(path), fix).load()

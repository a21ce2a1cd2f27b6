"""Which backend runs the fast path, the C++ extension's build, and every `RRN_*` switch it reads.

Backends, chosen once per process (`backend()`), or forced for a while with `use_backend` (tests, rrn-bench):

- "cpp": the time loop in a small C++ extension of ATen calls (csrc/; no pybind11; built with the system
  compiler and ninja at first use, cached in torch's extensions folder, TORCH_EXTENSIONS_DIR);
- "python": the same algorithm with the loop in Python (loop.py), used when the extension cannot be built (no
  compiler or ninja: a warning says so once), or with `RRN_FAST_CELLS=0`;
- "step": `RRN_FAST_CELLS=step` turns the fast path off: the step-wise `Recurrence` loop with autograd;
- "triton": the fused Triton kernels of triton_kernel.py (`pip install rrn[triton]`). Not chosen process-wide:
  `kernel_for` picks them per call, for CUDA tensors whenever triton imports and the call is one they cover
  (else the call stays on the backend above, the ATen loop on CUDA; `use_backend` of another backend keeps
  that one); `RRN_FAST_CELLS=triton` or `use_backend("triton")` forces them wherever they apply, CPU tensors
  included under Triton's interpreter (TRITON_INTERPRET=1 when triton_kernel.py is first imported: the tests).

The switches, all read here:

- `RRN_FAST_CELLS`: 1 (default) the C++ loop, falling back to "python" with a warning where it cannot be built;
  `require` the C++ loop or an error (CI: a broken build must fail the tests, not skip them); 0 "python";
  `step` "step"; `triton` the Triton kernels wherever they apply (the rest on the C++ or Python loop);
- `RRN_TRITON`: 1 (default) the Triton kernels for CUDA tensors where they apply, 0 the ATen loop there; read at
  each call;
- `RRN_ONEDNN`: 1 (default) lets float32 layers with hidden_size >= 256 multiply by oneDNN's matmul each step
  (csrc/step_gemm.h), 0 keeps ATen's mm; read at each call;
- `RRN_FAST_CELLS_DEVICE_LOOP`: 1 runs the loop of ATen ops a GPU runs (csrc/device_loop.h) on CPU too, which is
  how the tests check it without a GPU; 0 (default) the CPU loop; read at each call.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import threading
import warnings
from pathlib import Path
from typing import NamedTuple

import torch

from rrn_app.option_checks import UserError

ENV = "RRN_FAST_CELLS"
ONEDNN_ENV = "RRN_ONEDNN"
DEVICE_LOOP_ENV = "RRN_FAST_CELLS_DEVICE_LOOP"
TRITON_ENV = "RRN_TRITON"
CSRC = Path(__file__).with_name("csrc")
SOURCES = ("ops.cpp",)  # compiled; the headers beside it are included (and hashed into the build's name)
EXTENSION = "rrn_fast_cells"  # the ops' namespace: torch.ops.rrn_fast_cells
OPENMP_FLAG = "-fopenmp"  # without OpenMP (a compiler lacking it: tried next) the loops run on one thread
BACKENDS = ("cpp", "python", "step", "triton")

_lock = threading.Lock()
_backend: str | None = None
_forced: str | None = None
_built: bool | None = None
_build_error: str | None = None
_triton = None  # triton_kernel.py once imported, or the ImportError's text


class SwitchError(UserError, RuntimeError):
    """An `RRN_*` variable set to a value it does not take."""


class FastPathBuildError(UserError, RuntimeError):
    """`RRN_FAST_CELLS=require` and the C++ extension could not be built."""


class Switches(NamedTuple):
    """The per-call switches the C++ ops take after the spec: (onednn, device_loop)."""

    onednn: bool
    device_loop: bool


def switch_on(name: str, otherwise: bool) -> bool:
    """An on/off environment variable: unset (or empty) gives `otherwise`; anything but 0 or 1 is an error."""
    setting = os.environ.get(name, "")
    if setting == "":
        return otherwise
    if setting not in ("0", "1"):
        raise SwitchError(f"{name}='{setting}' is not a setting: 1 (on) or 0 (off)")
    return setting == "1"


def switches() -> Switches:
    """RRN_ONEDNN and RRN_FAST_CELLS_DEVICE_LOOP as they are now."""
    return Switches(switch_on(ONEDNN_ENV, True), switch_on(DEVICE_LOOP_ENV, False))


def _setting() -> str:
    """RRN_FAST_CELLS as a backend: "cpp", "require", "python" or "step"."""
    raw = os.environ.get(ENV, "1")
    setting = raw.strip().lower()
    if setting in ("step", "off", "none"):
        return "step"
    if setting in ("0", "python", "false", "no"):
        return "python"
    if setting in ("1", "cpp", "true", "yes", ""):
        return "cpp"
    if setting in ("require", "triton"):
        return setting
    raise UserError(f"{ENV}={raw!r} is not a setting: 1 (the C++ loop, the default), require (the C++ loop, and "
                    "an error where it cannot be built), 0 (the same algorithm in pure PyTorch), triton (the "
                    "Triton kernels wherever they apply) or step (the step-by-step autograd loop)")


def _required() -> bool:
    """RRN_FAST_CELLS=require: the C++ loop or an error."""
    return os.environ.get(ENV, "").strip().lower() == "require"


def _torch_uses_openmp() -> bool:
    """torch's threads are OpenMP's: at::parallel_for (inlined from ATen's headers) runs in parallel only when the
    extension is compiled with OpenMP too — then it shares torch's OpenMP runtime (libgomp.so.1, already loaded)."""
    return sys.platform.startswith("linux") and "parallel backend: OpenMP" in torch.__config__.parallel_info()


def build_name(flags: list[str]) -> str:
    """The extension's build name: rrn_fast_cells_<hash of every file in csrc/ and the flags>, so that a change to
    any source or header builds afresh instead of loading a stale cached library."""
    digest = hashlib.sha256(" ".join(flags).encode())
    for path in sorted(CSRC.iterdir()):
        if path.suffix in (".cpp", ".h"):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{EXTENSION}_{digest.hexdigest()[:12]}"


def _try_build() -> str | None:
    """Build (or load from the cache) the extension; None when done, else what went wrong."""
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        return "no C++ compiler found (set CXX or install g++)"
    problem = None
    for flags in ([OPENMP_FLAG], []) if _torch_uses_openmp() else ([],):
        try:
            cpp_extension.load(build_name(flags), [str(CSRC / source) for source in SOURCES],
                               extra_cflags=["-O3", *flags], extra_ldflags=flags, is_python_module=False,
                               verbose=False)
            return None
        except Exception as error:  # a broken toolchain must not stop training (unless required)
            problem = f"building it failed: {type(error).__name__}: {str(error).strip()[-600:]}"
    return problem


def _build(required: bool = False) -> bool:
    """Build the C++ extension once; False, with a warning, when that is not possible (required: an error)."""
    global _built, _build_error
    if _built is None:
        _build_error = _try_build()
        _built = _build_error is None
        if not _built and not required:
            warnings.warn(f"rrn: the C++ fast path of res_rnn/gres_rnn is unavailable, using the pure PyTorch one "
                          f"(slower): {_build_error}. Set {ENV}=0 to choose it and silence this warning.",
                          RuntimeWarning, stacklevel=3)
    if not _built and required:
        why = f" ({ENV}=require makes that an error)" if _required() else ""
        raise FastPathBuildError(f"the C++ fast path of res_rnn/gres_rnn cannot be built{why}: {_build_error}")
    return _built


def backend() -> str:
    """"cpp", "python" or "step" (see the module docstring); the C++ extension is built on the first call."""
    global _backend
    if _forced is not None:
        return _forced
    if _backend is None:
        with _lock:
            if _backend is None:
                setting = _setting()
                if setting in ("cpp", "require"):
                    _backend = "cpp" if _build(required=setting == "require") else "python"
                elif setting == "triton":
                    triton_kernels()  # an error now if triton is missing, not at the first layer
                    _backend = "triton"
                else:
                    _backend = setting
    return _backend


class use_backend:
    """Context manager (and plain setter) forcing a backend in this process: tests and rrn-bench compare them."""

    def __init__(self, name: str | None):
        if name not in (None, *BACKENDS):
            raise ValueError(f"unknown fast-cell backend {name!r}: cpp, python, step or triton")
        if name == "cpp" and backend_available("cpp") is False:
            raise RuntimeError("the C++ fast path is not available here (see the warning above)")
        if name == "triton":
            triton_kernels()
        global _forced
        self.previous, _forced = _forced, name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _forced
        _forced = self.previous


def _loaded() -> bool:
    return hasattr(torch.ops, EXTENSION) and hasattr(getattr(torch.ops, EXTENSION), "forward")


def backend_available(name: str) -> bool:
    """Whether `name` can run here: "python" and "step" always; "cpp" where the extension builds (building it);
    "triton" where triton imports.

    Under RRN_FAST_CELLS=require "cpp" always counts as available, without building: the build happens when the
    C++ loop first runs, and its failure is an error there — so what needs it fails, rather than being skipped.
    """
    if name == "triton":
        return not isinstance(_import_triton(), str)
    if name != "cpp" or _backend == "cpp" or _loaded():
        return True
    if _required():
        return True
    with _lock:
        return _build()


def cpp_ops():
    """torch.ops.rrn_fast_cells, built first if need be (RRN_FAST_CELLS=require: an error if it cannot be)."""
    if not _loaded():
        with _lock:
            _build(required=True)
    return getattr(torch.ops, EXTENSION)


def step_gemm(weight: torch.Tensor, which: str) -> str:
    """What multiplies the state by this layer's recurrent weight [U; ...] each step: "oneDNN" or "ATen"."""
    return cpp_ops().step_gemm(weight, switches().onednn) if which == "cpp" else "ATen"


def _import_triton():
    """triton_kernel.py, imported once; the error's text where triton is missing or broken (broken: a warning)."""
    global _triton
    if _triton is None:
        try:
            from rrn_app.cells.fast import triton_kernel
            _triton = triton_kernel
        except Exception as error:  # a broken triton must not stop training: the ATen loop runs instead
            _triton = f"{type(error).__name__}: {error}"
            if not (isinstance(error, ModuleNotFoundError) and error.name == "triton"):  # not installed: no news
                warnings.warn(f"rrn: the Triton kernels of res_rnn/gres_rnn are unavailable, using the ATen loop on "
                              f"CUDA: {_triton}. Set {TRITON_ENV}=0 to silence this warning.", RuntimeWarning,
                              stacklevel=3)
    return _triton


def triton_kernels():
    """triton_kernel.py (its `supports`, `forward`, `backward`), or a UserError saying how to install triton."""
    module = _import_triton()
    if isinstance(module, str):
        raise UserError(f"the Triton kernels of res_rnn/gres_rnn need triton, which does not import here ({module}): "
                        "pip install 'rrn[triton]', or unset RRN_FAST_CELLS=triton")
    return module


def kernel_for(spec, which: str, xp: torch.Tensor, s0: torch.Tensor, weight: torch.Tensor,
               gamma: torch.Tensor | None) -> str:
    """The kernels that run this call: "triton" where forced (`which`) or, unless `use_backend` forces another
    backend (rrn-bench backend=cpp,triton compares them), for CUDA tensors (RRN_TRITON on, triton importable) when
    triton_kernel.supports the call; else `which`, or for a forced "triton" the loop it replaces ("cpp" where the
    extension builds, else "python")."""
    if which != "triton" and (_forced is not None
                              or not (xp.is_cuda and switch_on(TRITON_ENV, True) and backend_available("triton"))):
        return which  # CPU tensors never import triton here
    if triton_kernels().supports(spec, xp, s0, weight, gamma):
        return "triton"
    if which != "triton":
        return which
    with _lock:
        return "cpp" if _loaded() or _build() else "python"


def layer_kernel(layer, which: str, x: torch.Tensor, state: torch.dtype, gemm: torch.dtype) -> str:
    """What `kernel_for` gives a call of a res_rnn/gres_rnn layer (fast_backend `which`) on x [B, T, I] with its
    states in `state` and its GEMMs in `gemm` (precision.py): "triton" where the Triton kernels would run it
    (rrn-bench's path column), else `which`."""
    if which == "step":
        return which
    batch, steps, H = x.shape[0], x.shape[1], layer.hidden_size
    xp = x.new_empty(steps, batch, layer.weight_ih.shape[0], dtype=state)
    weight = x.new_empty(layer.fast_spec.recurrent_rows(H), H, dtype=gemm)
    gamma = None if layer.norm is None else layer.norm.weight
    return kernel_for(layer.fast_spec, which, xp, xp.new_empty(batch, H), weight, gamma)

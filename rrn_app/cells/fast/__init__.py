"""The fast path of `res_rnn` and `gres_rnn`: the whole recurrence of a layer as one autograd op, BPTT by hand.

A step-wise cell run by `Recurrence` costs a dozen autograd-recorded ops per timestep, and at the sizes of the
papers that per-op overhead, not the arithmetic, sets the speed. Here one layer, one direction is W x_t + b for
every t in one GEMM, then the time loop — one GEMM per step and one fused elementwise pass — and its backward
pass written out, with the weight gradients as single GEMMs after the loop (the equations: loop.py).

- spec.py      `RecurrenceSpec`: what the layer computes (activations, projection, gate, batch norm), frozen
- backends.py  which backend runs ("cpp", "python", "step"; "triton" per call: kernel_for), the C++ build, every
               RRN_* switch
- loop.py      the algorithm with the loop in Python (the "python" backend), each tensor's shape
- function.py  the autograd Function over either backend's kernels
- precision.py under autocast: which part of the recurrence runs in which dtype, RRN_AUTOCAST_GEMM
- layer.py     a layer's batch-first call marshalled to the time-major op and back
- triton_kernel.py  the fused Triton kernels (CUDA tensors; CPU ones under Triton's interpreter), rrn[triton]
- csrc/        the C++ loop: spec.h, elementwise.h (CPU's fused pass), step_gemm.h (MKL or oneDNN), threading.h,
               batch_norm.h, recurrence.h (one call's tensors), cpu_loop.h, device_loop.h (ATen ops, any
               device), ops.cpp (the ops and their registration). A kernel for another device is a new loop
               header and one branch in ops.cpp.

Recurrent batch norm (batch_norm.py) is on the fast path too: the U s_{t-1} columns of P are normalized in place
each step (training: the statistics of the sequences still running; evaluation: the running estimates of the
step), its backward pass is written out per step, and the running estimates are updated after the loop from the
recorded per-step statistics, exactly as the step-wise loop updates them. Autocast (mixed precision) is on the
fast path as well (precision.py: float32 states and statistics, the GEMMs in autocast's dtype where native). Not
on the fast path (the cells fall back to the step-wise loop by themselves): weights in dtypes other than
float32/float64, and a subclass that overrides `step`, `residual` or `project_inputs`. The generic plugin-facing
`Recurrence` path (recurrence.py) keeps its autograd loop: an arbitrary Python `step` has no hand-written backward
pass.
"""

from rrn_app.cells.fast.backends import backend, backend_available, step_gemm, use_backend
from rrn_app.cells.fast.function import residual_recurrence
from rrn_app.cells.fast.layer import run_layer
from rrn_app.cells.fast.precision import Precision, call_precision, supported_input
from rrn_app.cells.fast.spec import ACTIVATIONS, BATCH_NORM_EPS, OUTPUT_ACTIVATIONS, RecurrenceSpec

__all__ = ["ACTIVATIONS", "BATCH_NORM_EPS", "OUTPUT_ACTIVATIONS", "Precision", "RecurrenceSpec", "backend",
           "backend_available", "call_precision", "residual_recurrence", "run_layer", "step_gemm", "supported_input",
           "use_backend"]

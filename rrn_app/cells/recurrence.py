"""`Recurrence`: one layer, one direction of a step-wise cell. A new cell writes one timestep; this runs it.

A subclass sets `hidden_size` and writes

    project_inputs(x)                     the input-side transform of every timestep at once: one GEMM (W x + b
                                          for all t), plus anything else that reads x only
    step(inputs, state, t, running)       one timestep: the new state from the projected input and the last state

and, if its state is more than one tensor (an LSTM's (h, c)), `initial_state`. The state is a tensor h, or a
tuple whose first element is the output h. Over a padded batch the loop is

    for t in 0 .. longest - 1:
        new = step(inputs[:, t], state, t, running[:, t])
        state  = new where t < length, else the state stays       (each sequence stops at its own length)
        output[:, t] = h where t < length, else 0

so a padded batch gives exactly what each sequence gives alone, and the final state of each sequence is the
one at its own last step. `running` ([batch, 1], True where t < length; None without padding) is for a step
that keeps batch statistics (recurrent batch norm); most steps ignore it, and `t` too.

The plugin fast path. A step that reads neither `t` nor `running` can be written as

    recurrent_step(inputs, state)         the new state from one timestep's projected inputs and the last state

instead of `step` (a pure function of tensors and the layer's parameters). Such a layer can get its step
compiled with `torch.compile` — the step and the padding mask of one timestep, never the whole loop, whose
compile time would grow with the unrolled length — and the loop calls the compiled step. The loop itself, the
input projection hoisted out of it and the autograd through both stay as above, so the results are the plain
loop's (tests/test_plugin_fast_path.py holds them to it: values, gradients, padding, both directions).

When: the environment variable RRN_COMPILE_STEP. Unset (or "auto"), steps on CUDA tensors are compiled and
steps on CPU tensors run the plain loop: on CPU a compiled call's own overhead matched what fusing a small
step saves (docs/speed.md, "The plugin fast path", measured), and compiling costs seconds to a minute at the
first call. RRN_COMPILE_STEP=1 compiles on every device, =0 on none; any other value compiles everywhere with
that torch.compile backend (RRN_COMPILE_STEP=aot_eager). A layer class or instance with `compile_step = False`
never compiles. Where torch.compile is missing or fails (no C++ compiler, say) the plain loop runs instead,
after one warning. Later processes reuse torch's compile cache.

Stacking layers, both directions, dropout between layers and residual links come from `RecurrentStack`
(stack.py): a cell, built in or plugin, writes only this single-layer, single-direction recurrence.
"""

from __future__ import annotations

import os
import warnings

import torch
from torch import nn

from rrn_app.cells.sequence import length_mask

COMPILE_VARIABLE = "RRN_COMPILE_STEP"
_failed: set[type] = set()  # layer classes whose compiled step failed: they run the plain loop (one warning each)


def output_of(state):
    """The output h of a state: the tensor itself, or the first element of a tuple."""
    return state[0] if isinstance(state, tuple) else state


def keep_running(new, old, running):
    """The new state where a sequence is still running, the old one where it has ended."""
    if running is None:
        return new
    if isinstance(new, tuple):
        return tuple(torch.where(running, n, o) for n, o in zip(new, old))
    return torch.where(running, new, old)


def compile_backend() -> str | None:
    """The torch.compile backend RRN_COMPILE_STEP asks for ("inductor" unless it names one), or None when it turns
    compiling off."""
    value = os.environ.get(COMPILE_VARIABLE, "").strip()
    if value.lower() in ("0", "off", "false", "no"):
        return None
    return "inductor" if value.lower() in ("", "auto", "1", "on", "true", "yes") else value


def compiles_on(x: torch.Tensor | None) -> bool:
    """Whether RRN_COMPILE_STEP compiles a step over `x`: unset/auto on CUDA tensors only, else as it says."""
    if compile_backend() is None:
        return False
    automatic = os.environ.get(COMPILE_VARIABLE, "").strip().lower() in ("", "auto")
    return not automatic or (x is not None and x.is_cuda)


class Recurrence(nn.Module):
    """Base class of a single-layer, single-direction step-wise recurrence (see the module docstring)."""

    hidden_size: int
    compile_step: bool = True  # with `recurrent_step`: compile it (False: the plain loop, as for `step`)

    def project_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, time, input_size] -> what `step` reads at each t. Default: x itself."""
        return x

    def recurrent_step(self, inputs: torch.Tensor, state):
        """One timestep from its projected inputs and the last state, reading neither t nor the padding mask:
        written instead of `step`, it is compiled (the module docstring)."""
        raise NotImplementedError(f"{type(self).__name__} writes neither step nor recurrent_step")

    def step(self, inputs: torch.Tensor, state, t: int, running: torch.Tensor | None):
        return self.recurrent_step(inputs, state)

    def initial_state(self, x: torch.Tensor):
        return x.new_zeros(x.shape[0], self.hidden_size)

    # --- the loop ------------------------------------------------------------------------------------------------

    def masked_step(self, inputs: torch.Tensor, state, running: torch.Tensor | None):
        """`recurrent_step` with the padding mask applied: what is compiled, one timestep."""
        return keep_running(self.recurrent_step(inputs, state), state, running)

    def step_path(self, x: torch.Tensor | None = None) -> str:
        """What runs each timestep of a call on `x`: "compiled" (recurrent_step under torch.compile) or "loop"
        (step in Python)."""
        cls = type(self)
        if (cls.step is not Recurrence.step or cls.recurrent_step is Recurrence.recurrent_step
                or not self.compile_step or cls in _failed or not hasattr(torch, "compile") or not compiles_on(x)):
            return "loop"
        return "compiled"

    def compiled_step(self):
        """This layer's compiled `masked_step`, made on first use (and again when RRN_COMPILE_STEP changes);
        None where torch.compile refuses (after the one warning)."""
        backend = compile_backend()
        made = self.__dict__.get("_compiled")
        if made is None or made[0] != backend:
            try:
                made = (backend, torch.compile(self.masked_step, backend=backend))
            except Exception as error:  # noqa: BLE001  (an unknown backend, a Python torch.compile lacks)
                self.give_up_compiling(error)
                return None
            self.__dict__["_compiled"] = made  # not a submodule or buffer: never in the state dict
        return made[1]

    def give_up_compiling(self, error: Exception) -> None:
        """The plain loop from now on for this layer class, after one warning naming the error."""
        cls = type(self)
        if cls in _failed:
            return
        _failed.add(cls)
        first_line = (str(error).strip().splitlines() or [""])[0]
        warnings.warn(f"{cls.__name__}: torch.compile of its recurrent_step failed ({type(error).__name__}: "
                      f"{first_line}); it runs the plain step loop instead ({COMPILE_VARIABLE}=0 turns compiling "
                      f"off)", RuntimeWarning, stacklevel=3)

    def run_compiled(self, compiled, inputs, state, running):
        try:
            return compiled(inputs, state, running)
        except Exception as error:  # noqa: BLE001  (torch.compile's failures have many types)
            result = self.masked_step(inputs, state, running)  # a broken step raises its own error here
            self.give_up_compiling(error)
            return result

    def __getstate__(self):  # a copy or pickle of the layer leaves the compiled step behind (it is remade)
        state = dict(self.__dict__)
        state.pop("_compiled", None)
        return state

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        batch, total_length, _ = x.shape
        state = self.initial_state(x) if state is None else state
        running = None if lengths is None else length_mask(lengths.to(x.device), total_length)[:, :, None]
        longest = total_length if lengths is None else int(lengths.max())
        inputs = self.project_inputs(x[:, :longest])
        compiled = self.compiled_step() if self.step_path(x) == "compiled" else None
        outputs = []
        # unbind, not inputs[:, t]: the backward of one unbind stacks the steps' gradients once, where T slices
        # would each add a gradient as large as all of `inputs`
        for t, inputs_t in enumerate(inputs.unbind(1)):
            running_t = None if running is None else running[:, t]
            if compiled is None or type(self) in _failed:
                state = keep_running(self.step(inputs_t, state, t, running_t), state, running_t)
            else:
                state = self.run_compiled(compiled, inputs_t, state, running_t)
            outputs.append(output_of(state))
        outputs = torch.stack(outputs, dim=1)
        if running is not None:  # zero past each length, in one op for all steps
            outputs = torch.where(running[:, :longest], outputs, 0.0)
        if longest < total_length:
            outputs = nn.functional.pad(outputs, (0, 0, 0, total_length - longest))
        return outputs, state

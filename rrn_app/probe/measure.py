"""What the probe measures on a replayed cell (replay.py): gradient norms, state norms, step Jacobians.

- `LayerTimeMean`: per layer (and direction) and timestep, a mean over the batch's real positions, summed over
  several batches; timesteps counted from each sequence's start (`align="start"`) or back from its last step
  (`align="end"`: position -1 is the last real step, what a classifier reads).
- `gradient_norms(replay)`: after loss.backward(), ||dL/dh_t^(l)|| [batch, time] per layer and direction: the
  total gradient of the loss with respect to layer l's state at step t, through the layers above and the
  layer's own later steps.
- `state_norms(replay)`: ||h_t^(l)|| [batch, time] likewise.
- `step_jacobians(replay, ...)`: d state_t / d state_{t-1} of one layer and direction with its input x_t
  held fixed, for a few sequences at a few steps, and its singular values. For a layer whose state is one tensor
  (rnn, gru, res_rnn, gres_rnn) that is d h_t / d h_{t-1}; for an LSTM layer, whose state is (h_t, c_t), the
  Jacobian of the whole state, [2 hidden, 2 hidden] (the cell state's path is how an LSTM carries gradients).
"""

from __future__ import annotations

import numpy as np
import torch

from rrn_app.probe.replay import LayerRun, Replay


def in_positions(values: torch.Tensor, run: LayerRun) -> torch.Tensor:
    """[batch, steps] in processing order -> in each sequence's own positions (a backward direction reversed)."""
    if not run.backward:
        return values
    if run.order is None:
        return values.flip(1)
    return values.gather(1, run.order[:, :values.shape[1]])


def per_step(run: LayerRun, what: str) -> torch.Tensor:
    """||h_t|| or ||dL/dh_t|| [batch, steps] of one layer and direction, in positions."""
    if what == "gradient":
        missing = [t for t, h in enumerate(run.outputs) if h.grad is None]
        values = [torch.zeros(h.shape[0]) if h.grad is None else h.grad.detach().norm(dim=-1).cpu()
                  for h in run.outputs]
        if len(missing) == len(run.outputs):
            raise RuntimeError("no gradient reached the layer's states: call loss.backward() after the replay")
    else:
        values = [h.detach().norm(dim=-1).cpu() for h in run.outputs]
    return in_positions(torch.stack(values, dim=1), run)


def gradient_norms(replay: Replay) -> list[list[torch.Tensor]]:
    return [[per_step(run, "gradient") for run in runs] for runs in replay.layers_run]


def state_norms(replay: Replay) -> list[list[torch.Tensor]]:
    return [[per_step(run, "state") for run in runs] for runs in replay.layers_run]


class LayerTimeMean:
    """Running mean per (row, timestep) over real positions of several batches; rows are layer x direction."""

    def __init__(self, align: str = "start"):
        if align not in ("start", "end"):
            raise ValueError(f"align must be start or end, got {align!r}")
        self.align = align
        self.sums: dict[int, np.ndarray] = {}
        self.counts: dict[int, np.ndarray] = {}
        self.rows: int | None = None

    def add(self, values: list[list[torch.Tensor]], lengths: torch.Tensor | None) -> None:
        flat = [v for per_layer in values for v in per_layer]
        self.rows = len(flat)
        batch, steps = flat[0].shape
        lengths = torch.full((batch,), steps) if lengths is None else lengths.cpu().clamp(max=steps)
        positions = torch.arange(steps)[None, :].expand(batch, steps)
        real = positions < lengths[:, None]
        keys = (positions if self.align == "start" else positions - lengths[:, None])[real].numpy()  # -1: last step
        unique, inverse = np.unique(keys, return_inverse=True)
        counts = np.bincount(inverse, minlength=len(unique))
        for row, value in enumerate(flat):
            sums = np.bincount(inverse, weights=value[real].double().numpy(), minlength=len(unique))
            for key, total, count in zip(unique.tolist(), sums, counts):
                self.sums.setdefault(key, np.zeros(self.rows))[row] += total
                self.counts.setdefault(key, np.zeros(self.rows))[row] += count

    def table(self) -> tuple[list[int], np.ndarray, list[int]]:
        """(timesteps, means [rows, timesteps], counts per timestep)."""
        steps = sorted(self.sums)
        means = np.stack([self.sums[s] / self.counts[s] for s in steps], axis=1)
        return steps, means, [int(self.counts[s][0]) for s in steps]


def flatten_state(state) -> torch.Tensor:
    return torch.cat(state, dim=-1) if isinstance(state, tuple) else state


def unflatten_state(flat: torch.Tensor, like):
    if not isinstance(like, tuple):
        return flat
    sizes = [part.shape[-1] for part in like]
    return tuple(torch.split(flat, sizes, dim=-1))


def step_jacobian(run: LayerRun, sequence: int, t: int) -> torch.Tensor:
    """d state_t / d state_{t-1} [state width, state width] of one sequence at processing step t (input fixed)."""
    previous = run.initial if t == 0 else run.states[t - 1]
    like = tuple(p[sequence:sequence + 1].detach() for p in previous) if isinstance(previous, tuple) \
        else previous[sequence:sequence + 1].detach()
    inputs = run.inputs[sequence:sequence + 1, t].detach()

    def function(flat):
        return flatten_state(run.layer.step(inputs, unflatten_state(flat, like), t, None))[0]

    return torch.autograd.functional.jacobian(function, flatten_state(like))[:, 0, :]


def jacobian_steps(shortest: int, count: int) -> list[int]:
    """`count` steps spread from 1 to shortest - 1 (step t's Jacobian is d h_t / d h_{t-1})."""
    if shortest < 2:
        return [0]
    return sorted({int(round(s)) for s in np.linspace(1, shortest - 1, min(count, shortest - 1))})


def step_jacobians(replay: Replay, lengths: torch.Tensor | None, sequences: int = 4, steps: int = 5) -> dict:
    """Singular values of the step Jacobians of every layer's forward direction: the `sequences` longest
    sequences of the last replayed batch, at `steps` steps up to the shortest of them."""
    batch = replay.layers_run[0][0].outputs[0].shape[0]
    total = len(replay.layers_run[0][0].outputs)
    lengths = torch.full((batch,), total) if lengths is None else lengths.cpu()
    chosen = torch.argsort(lengths, descending=True, stable=True)[:sequences].tolist()
    at = jacobian_steps(int(lengths[chosen].min()), steps)
    layers = []
    with torch.enable_grad():
        for runs in replay.layers_run:
            run = runs[0]
            spectra = [[torch.linalg.svdvals(step_jacobian(run, b, t).double()).tolist() for b in chosen] for t in at]
            array = np.asarray(spectra)  # [steps, sequences, width]
            layers.append({
                "top": array[:, :, 0].mean(axis=1).tolist(),
                "bottom": array[:, :, -1].mean(axis=1).tolist(),
                "spectrum": array.mean(axis=1).tolist(),  # [steps, width]: the sorted values, mean over sequences
                "width": int(array.shape[-1]),
            })
    return {"steps": at, "sequences": chosen, "layers": layers}

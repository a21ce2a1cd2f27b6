"""`res_rnn`: the residual recurrent unit of Yue, Fu & Liang (2018), section 3.1, eqs. (8)-(13).

The state learns a residual with reference to the last state instead of a new state altogether:

    F(x_t, s_{t-1}) = act(W x_t + U s_{t-1} + b)            the residual function (eqs. 8-10), act: `activation`
    y   = W_im s_{t-1} + F(x_t, s_{t-1})                    shortcut plus residual (eq. 12)
    s_t = f(y)                                              f: `output_activation` (eq. 13)

With W_im = I and f the identity this is eq. (11), s_t = s_{t-1} + F: the state is the sum of the residuals
(eq. 17) and the gradient reaches every earlier state through the identity (eq. 18). Options:

- `activation` of F: tanh (the paper's experiments) or relu;
- `output_activation` f: identity (the paper: "f is ... an identity mapping") or tanh;
- `projection` W_im: identity (no parameters) or linear (a learned matrix; the sizes always allow either,
  since s_{t-1} and y are both hidden_size wide);
- `batch_norm`: recurrent batch normalization of the hidden-to-hidden term, F = act(W x_t + BN(U s_{t-1}) + b)
  (section 3.1, after Cooijmans et al. 2016; batch_norm.py), with per-timestep statistics up to
  `batch_norm_max_length` steps.

Initialisation, so that the recurrence starts near the identity mapping the paper argues for ("the weights of
the nonlinear block in eq. (11) are tuned towards zero"): W_im = I (the learned one too), b = 0, the recurrent
U uniform in ±0.1/sqrt(hidden_size) (a tenth of PyTorch's nn.RNN default), and W uniform in ±1/sqrt(hidden_size)
as nn.RNN, so that at the start ds_t/ds_{t-1} = f'(y) (W_im + act'(.) U) = I + O(0.1).

Speed: the layer runs on the fast path of fast/ — W x_t + b for all timesteps in one GEMM, one GEMM per step
for [U; W_im] s_{t-1}, the time loop and a hand-written back-propagation through time in C++ (or the same
algorithm in Python when no compiler is present), weight gradients as single GEMMs after the loop, recurrent
batch norm included. Under autocast (mixed precision) too: the GEMMs in autocast's dtype where the device has
it natively, the states, the elementwise pass and batch norm in float32 (fast/precision.py). For weights in
dtypes other than float32/float64 (outside autocast, inputs likewise), in a subclass that changes the step, or
with RRN_FAST_CELLS=step it runs step by step (recurrence.py) with autograd instead. reference.res_rnn is the
plain step-by-step version the tests check both against.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from rrn_app import option_checks
from rrn_app.cells import fast
from rrn_app.cells.batch_norm import RecurrentBatchNorm
from rrn_app.cells.recurrence import Recurrence
from rrn_app.cells.registry import register_cell
from rrn_app.cells.stack import RecurrentStack


def identity(z: torch.Tensor) -> torch.Tensor:
    return z


ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "identity": identity}


class ResRNNLayer(Recurrence):
    """One layer, one direction of Res-RNN: s_t = f(W_im s_{t-1} + act(W x_t + U s_{t-1} + b))."""

    transforms = 1  # how many hidden_size-wide transforms of x_t and s_{t-1}: F (gres_rnn adds its gate)

    def __init__(self, input_size: int, hidden_size: int, activation: str = "tanh",
                 output_activation: str = "identity", projection: str = "identity", batch_norm: bool = False,
                 batch_norm_max_length: int = 100):
        super().__init__()
        self.hidden_size = hidden_size
        self.activation, self.output_activation = ACTIVATIONS[activation], ACTIVATIONS[output_activation]
        self.activation_name, self.output_activation_name = activation, output_activation
        width = self.transforms * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(width, input_size))  # W (gres_rnn: [W; W_g])
        self.weight_hh = nn.Parameter(torch.empty(width, hidden_size))  # U (gres_rnn: [U; U_g])
        self.bias = nn.Parameter(torch.empty(width))  # b (gres_rnn: [b; b_g])
        self.weight_im = nn.Parameter(torch.empty(hidden_size, hidden_size)) if projection == "linear" else None
        self.norm = RecurrentBatchNorm(width, batch_norm_max_length) if batch_norm else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Near the identity mapping: see the module docstring."""
        bound = 1 / math.sqrt(self.hidden_size)
        nn.init.uniform_(self.weight_ih, -bound, bound)
        nn.init.uniform_(self.weight_hh, -0.1 * bound, 0.1 * bound)
        nn.init.zeros_(self.bias)
        if self.weight_im is not None:
            nn.init.eye_(self.weight_im)

    def project_inputs(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_ih, self.bias)  # W x_t + b for every t at once

    def residual(self, preactivation: torch.Tensor) -> torch.Tensor:
        """F(x_t, s_{t-1}) from W x_t + U s_{t-1} + b."""
        return self.activation(preactivation)

    fast_residual = residual  # the residual the fast path computes: a subclass overriding `residual` leaves it

    def step(self, inputs: torch.Tensor, state: torch.Tensor, t: int, running: torch.Tensor | None) -> torch.Tensor:
        recurrent = F.linear(state, self.weight_hh)
        if self.norm is not None:
            recurrent = self.norm(recurrent, t, running)
        shortcut = state if self.weight_im is None else F.linear(state, self.weight_im)
        return self.output_activation(shortcut + self.residual(inputs + recurrent))

    # --- the fast path (fast/) -----------------------------------------------------------------------------------

    fast_gated = False  # the residual F (res_rnn) or g ⊙ F (gres_rnn)

    @property
    def fast_spec(self) -> fast.RecurrenceSpec:
        """What this layer computes, for the fast path (only asked of a layer `fast_backend` lets on it)."""
        return fast.RecurrenceSpec(self.activation_name, self.output_activation_name,
                                   "identity" if self.weight_im is None else "linear", self.fast_gated,
                                   self.norm is not None)

    def fast_backend(self, x: torch.Tensor) -> str:
        """The backend this call runs on: "cpp" or "python" (fast/), or "step" (the Recurrence loop)."""
        cls = type(self)
        if (cls.step is not ResRNNLayer.step or cls.residual is not cls.fast_residual
                or cls.project_inputs is not ResRNNLayer.project_inputs
                or (self.norm is not None and (type(self.norm) is not RecurrentBatchNorm or self.norm.eps != fast.BATCH_NORM_EPS))
                or not fast.RecurrenceSpec.supports(self.activation_name, self.output_activation_name)
                or not fast.supported_input(x, self.weight_hh)):
            return "step"
        return fast.backend()

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        which = self.fast_backend(x)
        if which == "step":
            return super().forward(x, lengths, state)
        return fast.run_layer(self, self.fast_spec, which, x, lengths, state)


@register_cell("res_rnn")
class ResRNN(RecurrentStack):
    """Res-RNN (Yue et al. 2018): s_t = f(W_im s_{t-1} + act(W x_t + U s_{t-1} + b)), a residual recurrence.

    Options:
        activation: act of the residual function F, tanh or relu
        output_activation: f in s_t = f(W_im s_{t-1} + F): identity (the paper) or tanh
        projection: W_im: identity (the paper) or linear (learned, starts at the identity)
        batch_norm: recurrent batch norm of U s_{t-1} (Cooijmans et al. 2016)
        batch_norm_max_length: per-timestep batch-norm statistics up to this step, shared beyond it
    """

    layer = ResRNNLayer

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False, residual: bool = False, activation: str = "tanh",
                 output_activation: str = "identity", projection: str = "identity", batch_norm: bool = False,
                 batch_norm_max_length: int = 100):
        options = dict(
            activation=option_checks.one_of("activation", activation, fast.ACTIVATIONS),
            output_activation=option_checks.one_of("output_activation", output_activation, fast.OUTPUT_ACTIVATIONS),
            projection=option_checks.one_of("projection", projection, ("identity", "linear")),
            batch_norm=bool(option_checks.one_of("batch_norm", batch_norm, (False, True))),
            batch_norm_max_length=option_checks.positive_int("batch_norm_max_length", batch_norm_max_length),
        )
        layer = self.layer
        super().__init__(input_size, hidden_size, num_layers, dropout, bidirectional, residual,
                         make_layer=lambda size, hidden: layer(size, hidden, **options))

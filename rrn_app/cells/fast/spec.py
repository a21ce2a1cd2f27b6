"""`RecurrenceSpec`: what one layer, one direction of the fast path computes, as one frozen object.

    F   = act(W x_t + U s_{t-1} + b)                        activation: tanh or relu
    g   = σ(W_g x_t + U_g s_{t-1} + b_g)                    gated (gres_rnn) only
    y   = base + F (⊙ g),  base = W_im s_{t-1} (projection linear) or s_{t-1} (identity)
    s_t = f(y)                                              output_activation f: identity or tanh

(batch_norm: U s_{t-1} and U_g s_{t-1} normalized per step, batch_norm.py.) The spec fixes the widths of the
tensors the loop passes around: with H = hidden_size, the input projection xp is [T, B, kH], kH = H (2H gated),
and the recurrent weight [U; (U_g;) (W_im)] is [R, H], R = kH (+ H with projection linear).

The C++ extension gets the spec as integer codes (`codes`), one numbering for both activations: `Activation`
here and `enum Activation` in csrc/spec.h must agree (a test checks them against each other).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property


class Activation(enum.IntEnum):
    """An elementwise function's code, shared with csrc/spec.h."""

    IDENTITY = 0
    TANH = 1
    RELU = 2


ACTIVATIONS = ("tanh", "relu")  # the residual function's activation on the fast path, in the options' order
OUTPUT_ACTIVATIONS = ("identity", "tanh")  # f, likewise
PROJECTIONS = ("identity", "linear")
BATCH_NORM_EPS = 1e-5  # the only eps the fast path's batch norm uses (csrc/batch_norm.h likewise)


@dataclass(frozen=True)
class RecurrenceSpec:
    """One layer's recurrence: see the module docstring. Validated on construction (a ValueError names the field)."""

    activation: str = "tanh"
    output_activation: str = "identity"
    projection: str = "identity"
    gated: bool = False
    batch_norm: bool = False

    def __post_init__(self):
        for field, value, allowed in (("activation", self.activation, ACTIVATIONS),
                                      ("output_activation", self.output_activation, OUTPUT_ACTIVATIONS),
                                      ("projection", self.projection, PROJECTIONS)):
            if value not in allowed:
                raise ValueError(f"RecurrenceSpec.{field}={value!r}: the fast path has {', '.join(allowed)}")

    @staticmethod
    def supports(activation: str, output_activation: str) -> bool:
        """Whether the fast path computes these activations (a layer with others runs step by step)."""
        return activation in ACTIVATIONS and output_activation in OUTPUT_ACTIVATIONS

    @property
    def linear(self) -> bool:
        """Whether the shortcut is a learned W_im s_{t-1} (projection linear) rather than s_{t-1} itself."""
        return self.projection == "linear"

    def input_width(self, hidden_size: int) -> int:
        """kH: the columns of xp, W x_t + b (and W_g x_t + b_g when gated)."""
        return (2 if self.gated else 1) * hidden_size

    def recurrent_rows(self, hidden_size: int) -> int:
        """R: the rows of the recurrent weight [U; (U_g;) (W_im)]."""
        return self.input_width(hidden_size) + (hidden_size if self.linear else 0)

    @cached_property
    def codes(self) -> tuple[int, int, bool, bool]:
        """(activation, output_activation, gated, linear): the spec as the C++ ops take it, first in every op."""
        return (int(Activation[self.activation.upper()]), int(Activation[self.output_activation.upper()]),
                self.gated, self.linear)

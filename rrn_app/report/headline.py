"""Which metrics a task reports by default, which way is better, and how each is shown.

Fractions (accuracy, F1) are shown and compared in percentage points, the unit papers print; NLL, bits per
character and losses as logged.
"""

from __future__ import annotations

from dataclasses import dataclass

# The headline metrics of each built-in task, in the order the report shows them (rrn_app/tasks/*.py log them).
HEADLINE: dict[str, tuple[str, ...]] = {
    "sst": ("test/acc", "test/f1_macro", "val/acc", "val/f1_macro"),
    "imdb": ("test/acc", "test/f1_macro", "val/acc", "val/f1_macro"),
    "atis": ("test/slot_f1", "test/intent_acc", "val/slot_f1", "val/intent_acc"),
    "char_lm": ("test/loss", "test/bpc", "val/loss", "val/bpc"),
    "music": ("test/nll", "val/nll", "test/frame_acc", "val/frame_acc"),
}

_HIGHER = ("acc", "f1", "precision", "recall", "f1_macro", "slot_f1")
_LOWER = ("loss", "nll", "bpc", "perplexity")
_FRACTIONS = ("acc", "f1", "precision", "recall")


@dataclass(frozen=True)
class Metric:
    """A logged metric (`test/acc`) and how the report treats it."""

    name: str
    higher_is_better: bool
    scale: float  # multiply the logged value by this for display and statistics (100: fraction -> percent)
    unit: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.unit})" if self.unit else self.name


def describe(name: str, task: str | None = None) -> Metric:
    """The Metric for a logged name, judged by its last part (`val/slot_f1` -> higher is better, percent)."""
    short = name.rsplit("/", 1)[-1]
    is_fraction = any(short == part or short.endswith("_" + part) or short.startswith(part + "_")
                      for part in _FRACTIONS)
    lower = any(short == part or short.endswith("_" + part) for part in _LOWER)
    units = {"nll": "nats/step", "bpc": "bits/char"}
    if is_fraction:
        return Metric(name, True, 100.0, "%")
    if short == "loss":
        return Metric(name, False, 1.0, "nats/char" if task == "char_lm" else "")
    return Metric(name, not lower, 1.0, units.get(short, ""))


def headline_metrics(task: str, logged: set[str]) -> list[str]:
    """The task's headline metrics that its runs logged; for a task rrn does not know, every val/ and test/
    metric except the per-class ones."""
    if task in HEADLINE:
        return [name for name in HEADLINE[task] if name in logged]
    return sorted(name for name in logged if name.startswith(("test/", "val/")) and "_class" not in name)

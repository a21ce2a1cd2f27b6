"""The cell conformance kit: `check_cell(name_or_class, **options)` holds a cell to rrn's cell contract.

Like scikit-learn's `check_estimator`, it runs the contract on small random inputs (float64 where the cell
takes it) and raises `CellContractError`, an AssertionError naming the rule broken and by how much, at the
first rule a cell breaks. Call it in a plugin's tests:

    from rrn_app.testing import check_cell

    def test_my_cell_keeps_the_contract():
        check_cell("my_cell")                      # a registered name, or the class itself
        check_cell("my_cell", bidirectional=True, num_layers=2)

or from the command line: `rrn-cells check my_cell num_layers=2` (each rule passed/failed, exit 1 on failure).

The rules (`RULES`), each on a cell built in evaluation mode unless it says otherwise:

- output_size: `outputs` is [batch, time, output_size], `output_size` an int attribute.
- deterministic eval: two calls in evaluation mode give identical outputs (checked early: a random cell would break
  every comparison after it).
- lengths=None: no `lengths` gives what lengths all equal to the time dimension give.
- padding: a padded batch (lengths in 1..time, unsorted) gives what each sequence gives alone: the outputs
  before each length, zeros after it, and the final state. Run in both directions: a cell with a
  `bidirectional` option is also checked with bidirectional=True.
- state layout: PyTorch's, h_n or a tuple (h_n, c_n) of [num_layers * directions, batch, hidden_size] (a list of
  [directions, batch, width] per layer where the layers differ in width): every state tensor has the batch at
  dimension 1, and the exact shape where the cell has `num_layers` and `hidden_size` attributes.
- initial state: a given state is used (it changes the outputs), and the returned state can be fed back: running
  x1 then x2 from x1's state gives what running x1 followed by x2 gives (one direction only).
- gradients: every parameter gets a finite gradient (evaluation mode: every path taken), and training mode's
  gradients are finite too.
- dropout: with dropout=0.5 (and two layers where the cell has `num_layers`), training mode's outputs differ from
  evaluation mode's, and evaluation mode stays deterministic.
- state_dict: a second cell (other initial weights) loading the first's state_dict through torch.save/torch.load
  gives identical outputs; buffers (batch-norm statistics, updated by a training pass first) included.
- bad options: hidden_size=0, num_layers=0, dropout=1.5, bidirectional='maybe' (each where the cell has the option)
  are refused with rrn's one-line error (`InvalidOption`/`UserError`) naming the option.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from rrn_app.option_checks import InvalidOption, UserError, check_annotated_options, constructor_parameters

INPUT_SIZE, HIDDEN_SIZE, LENGTHS = 3, 4, (6, 3, 1, 4)  # a batch of four, unsorted, one of full length
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-5}


class CellContractError(AssertionError):
    """A cell broke a rule of the cell contract: `rule` names it, `difference` is the max abs difference (if any)."""

    def __init__(self, rule: str, message: str, difference: float | None = None):
        self.rule, self.difference = rule, difference
        by = f" (max abs difference {difference:.3g})" if difference is not None else ""
        super().__init__(f"cell contract rule '{rule}' broken: {message}{by}")


@dataclass
class RuleResult:
    rule: str
    passed: bool
    detail: str = ""  # the error's message when it failed; "not applicable: ..." when the rule does not apply
    error: CellContractError | None = None


# --- helpers ---------------------------------------------------------------------------------------------------------


def _leaves(state) -> list:
    """The tensors of a state (a tensor, or tuples and lists of them), in order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, (tuple, list)):
        return [leaf for part in state for leaf in _leaves(part)]
    return [state]  # not a tensor: the layout rule reports it


def _map(state, function):
    if isinstance(state, torch.Tensor):
        return function(state)
    if isinstance(state, (tuple, list)):
        return type(state)(_map(part, function) for part in state)
    return state


def difference(a, b) -> float:
    """Max abs difference of two tensors or states (inf where their shapes or structure differ)."""
    a_leaves, b_leaves = _leaves(a), _leaves(b)
    if len(a_leaves) != len(b_leaves):
        return math.inf
    worst = 0.0
    for x, y in zip(a_leaves, b_leaves):
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)) or x.shape != y.shape:
            return math.inf
        if x.numel():
            worst = max(worst, float((x.detach().double() - y.detach().double()).abs().max()))
    return worst


class _Subject:
    """How to build the cell under test: by its registered name (through `build_cell`, as rrn-train does) or its
    class, with the given options over the kit's small defaults; in float64 when the cell runs in it."""

    def __init__(self, cell: str | type, options: dict):
        from rrn_app.cells import cell_info, list_cells

        if isinstance(cell, str):
            self.name, self.cls = cell, cell_info(cell).cls
        else:  # a class: built through the registry only if it is the class registered under its name
            name = getattr(cell, "cell_name", None)
            self.name = name if name in list_cells() and cell_info(name).cls is cell else None
            self.cls = cell
        self.parameters = constructor_parameters(self.cls)
        self.options = dict(options)
        if "hidden_size" in self.parameters and "hidden_size" not in self.options:
            self.options["hidden_size"] = HIDDEN_SIZE
        self.dtype = torch.float64

    def has(self, option: str) -> bool:
        return option in self.parameters

    def build(self, seed: int = 0, **changes) -> nn.Module:
        """The cell with `changes` over the options, its weights drawn from `seed`, in evaluation mode."""
        from rrn_app.cells import build_cell

        options = {**self.options, **changes}
        torch.manual_seed(seed)
        if self.name is not None:
            module = build_cell({"name": self.name, **options}, input_size=INPUT_SIZE)
        else:
            check_annotated_options("cell", self.cls, options, owner=self.cls.__qualname__)
            try:
                module = self.cls(input_size=INPUT_SIZE, **options)
            except InvalidOption as error:
                raise error.with_prefix("cell") from None
        return module.to(self.dtype).eval()

    def inputs(self, seed: int, batch: int = len(LENGTHS), time: int = max(LENGTHS)) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(batch, time, INPUT_SIZE, generator=generator, dtype=self.dtype)


def _lengths() -> torch.Tensor:
    return torch.tensor(LENGTHS, dtype=torch.int64)


def _require(rule: str, worst: float, tolerance: float, what: str) -> None:
    if not worst <= tolerance:  # also catches nan
        raise CellContractError(rule, what, worst)


# --- the rules -------------------------------------------------------------------------------------------------------


def rule_output_size(subject: _Subject) -> None:
    cell = subject.build()
    size = getattr(cell, "output_size", None)
    if not isinstance(size, int) or isinstance(size, bool):
        raise CellContractError("output_size", f"the cell has no int attribute output_size (got {size!r})")
    x = subject.inputs(1)
    outputs, _ = cell(x, _lengths())
    expected = (x.shape[0], x.shape[1], size)
    if tuple(outputs.shape) != expected:
        raise CellContractError("output_size", f"outputs have shape {tuple(outputs.shape)}, expected [batch, time, "
                                               f"output_size] = {list(expected)}")


def rule_no_lengths(subject: _Subject) -> None:
    cell, x = subject.build(), subject.inputs(2)
    full = torch.full((x.shape[0],), x.shape[1], dtype=torch.int64)
    tolerance = TOLERANCE[subject.dtype]
    with torch.no_grad():
        (out_none, state_none), (out_full, state_full) = cell(x), cell(x, full)
    _require("lengths=None", difference(out_none, out_full), tolerance,
             "lengths=None gives other outputs than lengths all equal to the time dimension")
    _require("lengths=None", difference(state_none, state_full), tolerance,
             "lengths=None gives another final state than lengths all equal to the time dimension")


def _padding_rules(subject: _Subject, **changes) -> None:
    where = " (bidirectional)" if changes.get("bidirectional") else ""
    cell, x, lengths = subject.build(**changes), subject.inputs(3), _lengths()
    tolerance = TOLERANCE[subject.dtype]
    with torch.no_grad():
        outputs, state = cell(x, lengths)
        for index, length in enumerate(LENGTHS):
            alone, alone_state = cell(x[index:index + 1, :length])
            _require(f"padding{where}: outputs before each length",
                     difference(outputs[index:index + 1, :length], alone), tolerance,
                     f"sequence {index} (length {length} of {x.shape[1]}) gives other outputs in the padded batch "
                     "than alone: the padding reaches the real steps")
            _require(f"padding{where}: zeros after each length", difference(outputs[index, length:],
                     torch.zeros_like(outputs[index, length:])), 0.0,
                     f"sequence {index} (length {length} of {x.shape[1]}) has non-zero outputs past its length")
            try:
                _check_layout("state layout", state, x.shape[0])
            except CellContractError:
                continue  # a state without the batch at dimension 1 cannot be cut per sequence: `state layout` says so
            _require(f"padding{where}: final state",
                     difference(_map(state, lambda part: part[:, index:index + 1]), alone_state), tolerance,
                     f"sequence {index} (length {length} of {x.shape[1]}) ends in another state in the padded batch "
                     "than alone: the final state must be the one at each sequence's own last step")


def rule_padding(subject: _Subject) -> None:
    _padding_rules(subject)


def rule_padding_bidirectional(subject: _Subject) -> None:
    if not subject.has("bidirectional"):
        raise _NotApplicable("the cell has no bidirectional option")
    _padding_rules(subject, bidirectional=True)


def _check_layout(rule: str, state, batch: int) -> None:
    if state is None:
        raise CellContractError(rule, "forward returned no state (None); it must return each sequence's final state")
    for leaf in _leaves(state):
        if not isinstance(leaf, torch.Tensor):
            raise CellContractError(rule, f"the state holds a {type(leaf).__name__}: it must be a tensor or tuples "
                                          "and lists of tensors")
        if leaf.dim() < 2 or leaf.shape[1] != batch:
            raise CellContractError(rule, f"a state tensor of shape {list(leaf.shape)} has not the batch ({batch}) at "
                                          "dimension 1 (PyTorch's layout: [num_layers * directions, batch, hidden])")


def rule_state_layout(subject: _Subject) -> None:
    cell, x = subject.build(), subject.inputs(4)
    with torch.no_grad():
        _, state = cell(x, _lengths())
    _check_layout("state layout", state, x.shape[0])
    num_layers, hidden_size = getattr(cell, "num_layers", None), getattr(cell, "hidden_size", None)
    flat = isinstance(state, torch.Tensor) or (isinstance(state, tuple) and
                                               all(isinstance(part, torch.Tensor) for part in state))
    if flat and isinstance(num_layers, int) and isinstance(hidden_size, int):
        directions = 2 if getattr(cell, "bidirectional", False) else 1
        expected = [num_layers * directions, x.shape[0], hidden_size]
        for leaf in _leaves(state):
            if list(leaf.shape) != expected:
                raise CellContractError("state layout", f"a state tensor has shape {list(leaf.shape)}, expected "
                                                        f"[num_layers * directions, batch, hidden_size] = {expected}")


def rule_initial_state(subject: _Subject) -> None:
    cell, tolerance = subject.build(), TOLERANCE[subject.dtype]
    first, second = subject.inputs(5), subject.inputs(6)
    with torch.no_grad():
        _, state = cell(first)
        fresh, _ = cell(second)
        given, _ = cell(second, state=state)
        moved = difference(fresh, given)
        if not moved > tolerance:
            raise CellContractError("initial state", "a given initial state does not change the outputs: the cell "
                                                     "ignores `state`", moved)
        if getattr(cell, "bidirectional", False):
            return  # a backward direction starts at the end: running in two windows is not running once
        whole, whole_state = cell(torch.cat([first, second], dim=1))
        _require("initial state", difference(given, whole[:, first.shape[1]:]), tolerance,
                 "running x1, then x2 from x1's final state, gives other outputs for x2 than running x1 and x2 as one "
                 "sequence: the returned state cannot be fed back")
        _, carried_state = cell(second, state=state)
        _require("initial state", difference(carried_state, whole_state), tolerance,
                 "running x1, then x2 from x1's final state, ends in another state than running x1 and x2 as one")


def _backward(cell: nn.Module, x: torch.Tensor) -> None:
    outputs, state = cell(x, _lengths())
    weights = torch.linspace(-1, 1, outputs.numel(), dtype=outputs.dtype).view_as(outputs)
    loss = (outputs * weights).sum()
    for leaf in _leaves(state):
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point():
            loss = loss + leaf.sum()
    loss.backward()


def rule_gradients(subject: _Subject) -> None:
    cell = subject.build()
    _backward(cell, subject.inputs(7))
    named = [(name, parameter) for name, parameter in cell.named_parameters() if parameter.requires_grad]
    missing = [name for name, parameter in named if parameter.grad is None]
    if missing:
        raise CellContractError("gradients", f"no gradient reaches {', '.join(missing)} (evaluation mode: every path "
                                             "is taken)")
    _check_finite(named, "evaluation")
    cell.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    _backward(cell.train(), subject.inputs(7))
    _check_finite(named, "training")


def _check_finite(named, mode: str) -> None:
    for name, parameter in named:
        if parameter.grad is not None and not torch.isfinite(parameter.grad).all():
            raise CellContractError("gradients", f"the gradient of {name} is not finite in {mode} mode")


def rule_deterministic_eval(subject: _Subject) -> None:
    cell, x = subject.build(), subject.inputs(8)
    with torch.no_grad():
        torch.manual_seed(11)
        first = cell(x, _lengths())
        torch.manual_seed(12)
        second = cell(x, _lengths())
    _require("deterministic eval", difference(first, second), 0.0,
             "two calls in evaluation mode give different outputs or states")


def rule_dropout(subject: _Subject) -> None:
    if not subject.has("dropout"):
        raise _NotApplicable("the cell has no dropout option")
    changes = {"dropout": 0.5}
    if subject.has("num_layers"):
        layers = subject.options.get("num_layers", subject.parameters["num_layers"][1])
        if not isinstance(layers, int) or layers < 2:
            changes["num_layers"] = 2  # dropout acts between layers
    cell, x = subject.build(**changes), subject.inputs(9)
    with torch.no_grad():
        evaluated = cell(x, _lengths())
        _require("dropout only in training", difference(evaluated, cell(x, _lengths())), 0.0,
                 f"with {changes} two calls in evaluation mode differ: dropout acts outside training")
        torch.manual_seed(13)
        trained = cell.train()(x, _lengths())[0]
    moved = difference(trained, evaluated[0])
    if not moved > 0:
        raise CellContractError("dropout only in training", f"with {changes}, training mode gives the outputs of "
                                                            "evaluation mode: the dropout option does nothing", moved)


def rule_state_dict(subject: _Subject) -> None:
    original, x = subject.build(seed=0), subject.inputs(10)
    with torch.no_grad():
        torch.manual_seed(14)
        original.train()(x, _lengths())  # moves batch-norm statistics and other buffers away from their start
    original.eval()
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored = subject.build(seed=1)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    restored.eval()
    with torch.no_grad():
        _require("state_dict round trip", difference(original(x, _lengths()), restored(x, _lengths())), 0.0,
                 "a cell loading another's state_dict (torch.save / torch.load) gives other outputs or states: "
                 "something the outputs depend on is not in the state_dict")


BAD_OPTIONS = (("hidden_size", 0), ("num_layers", 0), ("dropout", 1.5), ("bidirectional", "maybe"))


def rule_bad_options(subject: _Subject) -> None:
    tried = [(option, value) for option, value in BAD_OPTIONS if subject.has(option)]
    if not tried:
        raise _NotApplicable(f"the cell has none of {', '.join(option for option, _ in BAD_OPTIONS)}")
    for option, value in tried:
        try:
            subject.build(**{option: value})
        except UserError as error:
            message = str(error)
            if "\n" in message or option not in message:
                raise CellContractError("bad options rejected", f"{option}={value!r} is refused, but the message "
                                        f"does not name {option} on one line: {message!r}") from None
            continue
        except Exception as error:  # refused, but not with rrn's one-line error
            raise CellContractError("bad options rejected", f"{option}={value!r} raises {type(error).__name__}: "
                                    f"{error}; refuse it with rrn_app.option_checks's InvalidOption (e.g. "
                                    "option_checks.positive_int, dropout_rate)") from None
        raise CellContractError("bad options rejected", f"{option}={value!r} is accepted; refuse it with "
                                                        "rrn_app.option_checks's InvalidOption")


class _NotApplicable(Exception):
    """A rule that does not apply to this cell (e.g. the dropout rule for a cell without dropout)."""


RULES: dict[str, Callable[[_Subject], None]] = {
    "output_size": rule_output_size,
    "deterministic eval": rule_deterministic_eval,  # early: a random cell breaks every comparison after it
    "lengths=None": rule_no_lengths,
    "padding": rule_padding,
    "padding (bidirectional)": rule_padding_bidirectional,
    "state layout": rule_state_layout,
    "initial state": rule_initial_state,
    "gradients": rule_gradients,
    "dropout only in training": rule_dropout,
    "state_dict round trip": rule_state_dict,
    "bad options rejected": rule_bad_options,
}


def contract_results(cell: str | type, **options) -> list[RuleResult]:
    """Every rule of the contract on `cell` (a registered name or a class) built with `options`: one result each.

    The options are the constructor's (hidden_size defaults to 4 for speed); the caller's random state is left
    as it was. Building the cell with the options at all is the first check: a UserError there is raised as is.
    """
    with torch.random.fork_rng(devices=[]):
        subject = _Subject(cell, options)
        try:
            subject.build()
            x = subject.inputs(0)
            subject.build()(x)  # float64 where the cell runs in it, else float32
        except UserError:
            raise
        except Exception:
            subject.dtype = torch.float32
        results = []
        for rule, check in RULES.items():
            try:
                check(subject)
            except _NotApplicable as reason:
                results.append(RuleResult(rule, True, f"not applicable: {reason}"))
            except CellContractError as error:
                results.append(RuleResult(error.rule, False, str(error), error))
            except Exception as crash:  # the cell crashed on the rule's inputs: that breaks the rule too
                error = CellContractError(rule, f"the cell raised {type(crash).__name__}: {crash}")
                results.append(RuleResult(rule, False, str(error), error))
            else:
                results.append(RuleResult(rule, True))
    return results


def check_cell(cell: str | type, **options) -> list[RuleResult]:
    """Hold `cell` (a registered name or a class) built with `options` to the cell contract (see the module
    docstring); raise CellContractError for the first rule it breaks, naming the others it breaks too.
    Returns the results when every rule holds."""
    results = contract_results(cell, **options)
    failed = [result for result in results if not result.passed]
    if failed:
        error = failed[0].error
        if failed[1:]:
            error.args = (f"{error.args[0]}; also broken: {', '.join(result.rule for result in failed[1:])}",)
        raise error
    return results


__all__ = ["CellContractError", "RULES", "RuleResult", "check_cell", "contract_results", "difference"]

"""The fast path's spec and build: one numbering of activations shared by Python and C++, a build name that
changes with any source file, and RRN_FAST_CELLS=require turning a failed build into an error."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings

import pytest

from rrn_app.cells.fast import backends
from rrn_app.cells.fast.spec import Activation, RecurrenceSpec


def cpp_builds() -> bool:
    """Whether the extension builds here (under RRN_FAST_CELLS=require: assumed, so a failure fails the test)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return backends.backend_available("cpp")


def test_the_spec_is_frozen_and_validated():
    spec = RecurrenceSpec(activation="relu", output_activation="tanh", projection="linear", gated=True)
    with pytest.raises(AttributeError):
        spec.activation = "tanh"
    assert (spec.input_width(8), spec.recurrent_rows(8)) == (16, 24)  # kH = 2H gated; R = kH + H with W_im
    assert (RecurrenceSpec().input_width(8), RecurrenceSpec().recurrent_rows(8)) == (8, 8)
    assert spec.codes == (Activation.RELU, Activation.TANH, True, True)
    assert RecurrenceSpec().codes == (Activation.TANH, Activation.IDENTITY, False, False)
    with pytest.raises(ValueError, match="RecurrenceSpec.activation='identity': the fast path has tanh, relu"):
        RecurrenceSpec(activation="identity")
    with pytest.raises(ValueError, match="RecurrenceSpec.projection='diagonal'"):
        RecurrenceSpec(projection="diagonal")


@pytest.mark.skipif(not cpp_builds(), reason="the C++ extension cannot be built here (no compiler or ninja)")
def test_python_and_cpp_number_the_activations_alike():
    assert backends.cpp_ops().spec_codes() == [Activation.IDENTITY, Activation.TANH, Activation.RELU]


def test_the_build_name_changes_with_any_source_file_or_flag(tmp_path, monkeypatch):
    copy = tmp_path / "csrc"
    shutil.copytree(backends.CSRC, copy)
    monkeypatch.setattr(backends, "CSRC", copy)
    name = backends.build_name(["-fopenmp"])
    assert name.startswith("rrn_fast_cells_") and name == backends.build_name(["-fopenmp"])
    assert backends.build_name([]) != name
    header = copy / "elementwise.h"
    header.write_text(header.read_text() + "\n// a change to a header alone\n")
    assert backends.build_name(["-fopenmp"]) != name


BROKEN_BUILD = """
import sys, pathlib, torch
from rrn_app.cells.fast import backends
backends.CSRC = pathlib.Path(sys.argv[1])
backends._torch_uses_openmp = lambda: False  # one build attempt, not one with OpenMP and one without
from rrn_app.cells import get_cell
outputs, _ = get_cell("res_rnn")(input_size=3, hidden_size=4)(torch.randn(2, 5, 3))
print(backends.backend(), tuple(outputs.shape))
"""


@pytest.mark.slow  # two failing compiles, about 20 s of CPU each
@pytest.mark.parametrize("setting", ["require", "1"])
def test_require_makes_a_broken_build_an_error_where_the_default_falls_back(setting, tmp_path):
    """A compile error in the C++ source: RRN_FAST_CELLS=require fails (CI), the default warns and runs in Python."""
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available() or shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no compiler or ninja: nothing to break")
    broken = tmp_path / "csrc"
    shutil.copytree(backends.CSRC, broken)
    (broken / "ops.cpp").write_text((broken / "ops.cpp").read_text() + "\nthis is not C++;\n")
    done = subprocess.run([sys.executable, "-c", BROKEN_BUILD, str(broken)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, backends.ENV: setting,
                                            "TORCH_EXTENSIONS_DIR": str(tmp_path / "extensions")})
    if setting == "require":
        assert done.returncode != 0
        assert "FastPathBuildError" in done.stderr
        assert "cannot be built (RRN_FAST_CELLS=require makes that an error)" in done.stderr
    else:
        assert done.returncode == 0, done.stderr
        assert "using the pure PyTorch one" in done.stderr
        assert done.stdout.split() == ["python", "(2,", "5,", "4)"]


def test_a_bad_onednn_switch_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv(backends.ONEDNN_ENV, "on")
    with pytest.raises(backends.SwitchError, match="^RRN_ONEDNN='on' is not a setting: 1 \\(on\\) or 0 \\(off\\)$"):
        backends.switches()
    monkeypatch.setenv(backends.ONEDNN_ENV, "0")
    monkeypatch.setenv(backends.DEVICE_LOOP_ENV, "1")
    assert backends.switches() == (False, True)

"""On a CUDA GPU (skipped elsewhere, with the reason): the fast path of res_rnn/gres_rnn against the CPU's,
the cells under 16-mixed and bf16-mixed autocast, a plugin's compiled step, rrn-train in both mixed precisions,
and two-GPU DDP where there are two. All are marked `cuda`: `pytest -m cuda` runs just these, and
tools/device_check.py runs them with rrn-bench on CUDA in one command."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import QUICK, run_cli, run_dir_of
from rrn_app.cells import get_cell

NO_CUDA = "needs a CUDA GPU (torch sees none here); tools/device_check.py runs these on one"
pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)]


@pytest.fixture(autouse=True)
def exact_float32(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def run_both(module, x, lengths):
    x = x.clone().requires_grad_(True)
    outputs, state = module(x, lengths)
    (outputs.square().sum() + state.sum()).backward()
    return outputs, x.grad, [p.grad for p in module.parameters()]


@pytest.mark.parametrize("cell, options", [("res_rnn", {}), ("gres_rnn", {}), ("res_rnn", {"projection": "linear"}),
                                           ("res_rnn", {"batch_norm": True})])
def test_the_fast_path_on_cuda_gives_the_cpus_values_and_gradients(cell, options):
    torch.manual_seed(0)
    cpu = get_cell(cell)(input_size=5, hidden_size=16, num_layers=2, bidirectional=True, **options).double()
    gpu = copy.deepcopy(cpu).cuda()
    x, lengths = torch.randn(4, 9, 5, dtype=torch.float64), torch.tensor([9, 4, 7, 1])
    want = run_both(cpu, x, lengths)
    got = run_both(gpu, x.cuda(), lengths)
    torch.testing.assert_close(got[0].cpu(), want[0], rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(got[1].cpu(), want[1], rtol=1e-7, atol=1e-9)
    for a, b in zip(got[2], want[2]):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["16-mixed", "bf16-mixed"])
@pytest.mark.parametrize("cell", ["res_rnn", "gres_rnn"])
def test_under_cuda_autocast_the_cells_stay_near_float32(cell, dtype):
    """Mixed precision rounds each GEMM's inputs to 8 (bfloat16) or 11 (float16) bits of mantissa: over 20 steps
    of a contracting recurrence the outputs stay within a few percent of float32."""
    torch.manual_seed(0)
    module = get_cell(cell)(input_size=8, hidden_size=32).cuda()
    x = torch.randn(4, 20, 8, device="cuda")
    reference = module(x)[0]
    with torch.autocast("cuda", dtype=dtype):
        outputs = module(x)[0]
    outputs.float().square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())
    tolerance = 0.05 if dtype == torch.bfloat16 else 0.01
    assert (outputs.float() - reference).abs().max() <= tolerance * reference.abs().max()


def test_a_plugins_compiled_step_on_cuda_gives_the_plain_loops_values(monkeypatch):
    from mingru_plugin import MinGRU

    from rrn_app.cells import recurrence
    from rrn_app.cells.recurrence import Recurrence

    monkeypatch.delenv(recurrence.COMPILE_VARIABLE, raising=False)
    torch.manual_seed(0)
    compiled = MinGRU(5, 16, bidirectional=True).cuda()
    plain = copy.deepcopy(compiled)
    for layer in plain.modules():
        if isinstance(layer, Recurrence):
            layer.compile_step = False
    x, lengths = torch.randn(4, 9, 5, device="cuda"), torch.tensor([9, 4, 7, 1])
    got, want = run_both(compiled, x, lengths), run_both(plain, x, lengths)
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)
    for a, b in zip(got[2], want[2]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_rrn_train_trains_on_the_gpu_in_mixed_precision(precision, data_root, tmp_path):
    result = run_cli("rrn-train", "task=sst", "cell=res_rnn", f"data.root={data_root}", *QUICK,
                     "trainer.accelerator=gpu", f"trainer.precision={precision}", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir_of(result) / "results.json").is_file()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_rrn_train_runs_ddp_on_two_gpus(data_root, tmp_path):
    result = run_cli("rrn-train", "task=sst", "cell=res_rnn", f"data.root={data_root}", *QUICK,
                     "trainer.accelerator=gpu", "trainer.devices=2", "trainer.strategy=ddp", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir_of(result) / "results.json").is_file()

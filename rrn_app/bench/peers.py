"""Peer rows of `rrn-bench` (`peers=sru,mingru` or `peers=all`): the recurrent layers from other packages that a
user would pick instead of rrn's cells, timed beside them with the same batch and calls. Each is optional — the
`peers` extra installs them (`pip install "rrn[peers]"`) — and a peer whose package is absent is left out of the
table with a note saying how to install it.

- `sru.SRU`: the `sru` package's Simple Recurrent Unit (Lei et al. 2018), one layer, time-major input; on CPU
  its training runs sru's step loop in autograd and its inference sru's C++ kernel, on CUDA its fused kernel.
- `minGRU`: `mingru-pytorch`'s minGRU (Feng et al. 2024) in its parallel form, a log-space associative scan
  over the whole sequence (`expansion_factor` H/I, no output projection: I in, H out).

Peers are timed at one layer, one direction: they join each group of rows beside that shape's nn.LSTM.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from rrn_app.option_checks import UserError

EXTRA = 'pip install "rrn[peers]"'


class SRUPeer(nn.Module):
    """sru.SRU behind rrn-bench's call: batch-first [batch, time, input] in, (outputs, final c) out."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        sru = import_quietly("sru")
        self.sru = sru.SRU(input_size, hidden_size, num_layers=1)

    @property
    def bench_path(self) -> str:
        return f"sru/{next(self.parameters()).device.type}"

    def forward(self, x: torch.Tensor):
        with warnings.catch_warnings():  # "Running SRU on CPU with grad_enabled=True. Are you sure?": we are
            warnings.simplefilter("ignore", UserWarning)
            outputs, c = self.sru(x.transpose(0, 1))
        return outputs.transpose(0, 1), c


class MinGRUPeer(nn.Module):
    """minGRU_pytorch.minGRU from input_size to hidden_size (expansion H/I, no output projection)."""

    bench_path = "log-scan"

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        module = import_quietly("minGRU_pytorch")
        self.mingru = module.minGRU(input_size, expansion_factor=hidden_size / input_size, proj_out=False)
        if self.mingru.to_hidden_and_gate.out_features != 2 * hidden_size:
            raise UserError(f"minGRU peer: mingru-pytorch makes int(input x hidden / input) = "
                            f"{self.mingru.to_hidden_and_gate.out_features // 2} units from input={input_size}, "
                            f"not hidden={hidden_size}: pick a hidden size that is a multiple of the input size")

    def forward(self, x: torch.Tensor):
        outputs = self.mingru(x)
        return outputs, outputs[:, -1]


@dataclass(frozen=True)
class Peer:
    label: str  # the row's name
    package: str  # the module imported
    pip: str  # what installs it alone
    make: Callable[[int, int], nn.Module]


PEERS = {
    "sru": Peer("sru.SRU", "sru", "pip install sru==2.6.0 --no-deps", SRUPeer),
    "mingru": Peer("minGRU", "minGRU_pytorch", "pip install mingru-pytorch", MinGRUPeer),
}
BY_LABEL = {peer.label: peer for peer in PEERS.values()}


def import_quietly(package: str):
    """Import a peer's package without its import-time warnings (sru's about CUDA kernels on a CPU machine)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(package)


def installed(name: str) -> bool:
    return importlib.util.find_spec(PEERS[name].package) is not None


def parse(text: str) -> list[str]:
    """The peers a `peers=` setting names: "" none, "all" every one, else a comma list of PEERS' keys."""
    from rrn_app.bench.settings import BenchError

    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == ["all"]:
        return list(PEERS)
    for name in names:
        if name not in PEERS:
            close = difflib.get_close_matches(name, list(PEERS), n=1)
            raise BenchError(f"peers={text!r}: no peer {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                             + f"; known: {', '.join(PEERS)} or all")
    return names


def available(names: list[str]) -> tuple[list[str], list[str]]:
    """(the peers whose package is installed, a note for each one left out)."""
    present, notes = [], []
    for name in names:
        if installed(name):
            present.append(name)
        else:
            peer = PEERS[name]
            notes.append(f"peer {peer.label} left out: its package {peer.package!r} is not installed ({EXTRA}, or "
                         f"{peer.pip})")
    return present, notes


def is_peer(kind: str) -> bool:
    return kind in BY_LABEL


def build(kind: str, input_size: int, hidden_size: int) -> nn.Module:
    return BY_LABEL[kind].make(input_size, hidden_size)

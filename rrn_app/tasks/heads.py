"""Output distributions of task=music: the probability of one frame (88 binary keys) given the recurrent state.

Every head has the same interface, whatever cell runs underneath (the state is the encoder's output after
dropout, [..., state_size]):
- `nll(state, frames, mask=None)`: [batch, time] exact negative log-likelihood of each frame in nats, summed over
  the keys; 0 where `mask` is False (padding).
- `sample(state, temperature, generator)`: one bool frame [..., keys] drawn from the distribution (temperature 1:
  exactly; other temperatures divide each key's logit by it; 0 takes the likelier value of each key in turn).
- `predict(state)`: a bool frame, the prediction that Bay et al.'s frame accuracy scores (independent: each key
  whose probability exceeds 0.5; nade: the same key by key, each conditioned on the keys chosen before it).

`IndependentHead` (`task.model.output=independent`): 88 independent Bernoulli keys, sigmoid of a linear layer.
`NADEHead` (`task.model.output=nade`): the NADE of RNN-NADE (Boulanger-Lewandowski et al. 2012), an autoregressive
distribution over the keys, low to high: p(v) = prod_i p(v_i | v_<i), with
    h_i = sigmoid(b_h + W[:, :i] v_<i),   p(v_i = 1 | v_<i) = sigmoid(b_v[i] + V[i] . h_i),
where the biases b_v [keys] and b_h [hidden] are linear in the recurrent state and W [hidden, keys], V [keys, hidden]
are shared. The NLL of a frame takes one pass (an exclusive cumulative sum over the keys, O(keys x hidden) per
frame, vectorised over batch and time); sampling goes key by key.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

OUTPUTS = ("independent", "nade")
NADE_CHUNK = 64  # frames per pass of NADEHead.nll: its [frames, keys, hidden] intermediates stay in the CPU's
                 # cache (3.4 MB each at 150 hidden units); 3.6x faster a training batch than 1,024 frames at a time


def masked(nll: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return nll if mask is None else nll * mask.to(nll.dtype)


class IndependentHead(nn.Linear):
    """88 independent Bernoulli keys: p(v_i = 1) = sigmoid(logit_i), the logits a linear layer of the state.
    (An nn.Linear itself, so checkpoints from before the choice of heads load unchanged.)"""

    def __init__(self, state_size: int, keys: int = 88):
        super().__init__(state_size, keys)

    def nll(self, state: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = self(state)
        return masked(F.binary_cross_entropy_with_logits(logits, frames.to(logits.dtype), reduction="none").sum(-1),
                      mask)

    def predict(self, state: torch.Tensor) -> torch.Tensor:
        return self(state) > 0

    def sample(self, state: torch.Tensor, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        logits = self(state)
        if temperature == 0:
            return logits > 0
        return torch.bernoulli(torch.sigmoid(logits / temperature), generator=generator).bool()


class NADEHead(nn.Module):
    """NADE over the keys of a frame, its biases given by the recurrent state (RNN-NADE).

    hidden: NADE hidden units (default 150, as in Boulanger-Lewandowski et al.)
    """

    def __init__(self, state_size: int, keys: int = 88, hidden: int = 150):
        super().__init__()
        self.keys, self.hidden = keys, hidden
        self.visible_bias = nn.Linear(state_size, keys)   # b_v(state)
        self.hidden_bias = nn.Linear(state_size, hidden)  # b_h(state)
        self.W = nn.Parameter(torch.empty(hidden, keys).uniform_(-1 / math.sqrt(keys), 1 / math.sqrt(keys)))
        self.V = nn.Parameter(torch.empty(keys, hidden).uniform_(-1 / math.sqrt(hidden), 1 / math.sqrt(hidden)))

    def key_logits(self, state: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """[frames, keys] logit of p(v_i = 1 | v_<i) for each key of each (true) frame; state [frames, S]."""
        contributions = frames.to(self.W.dtype)[:, :, None] * self.W.t()[None]   # [N, K, H]: v_j W[:, j]
        before = contributions.cumsum(1) - contributions                         # sum over j < i
        hidden = torch.sigmoid(self.hidden_bias(state)[:, None, :] + before)     # h_i [N, K, H]
        return self.visible_bias(state) + (hidden * self.V[None]).sum(-1)

    def nll(self, state: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        shape = frames.shape[:-1]
        flat_state, flat_frames = state.reshape(-1, state.shape[-1]), frames.reshape(-1, self.keys)
        keep = torch.ones(len(flat_frames), dtype=torch.bool, device=frames.device) if mask is None \
            else mask.reshape(-1)
        rows = keep.nonzero().squeeze(1)  # padding is never computed: it would only cost time and memory
        nll = flat_state.new_zeros(len(flat_frames))
        pieces = []
        for chunk in rows.split(NADE_CHUNK):
            target = flat_frames[chunk].to(flat_state.dtype)
            logits = self.key_logits(flat_state[chunk], target)
            pieces.append(F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1))
        if pieces:
            nll = nll.index_put((rows,), torch.cat(pieces))
        return nll.reshape(shape)

    def _key_by_key(self, state: torch.Tensor, choose) -> torch.Tensor:
        """A frame built low key to high: `choose(i, logit of key i) -> bool` given the keys chosen so far."""
        flat = state.reshape(-1, state.shape[-1])
        activation, visible_bias = self.hidden_bias(flat), self.visible_bias(flat)
        frame = torch.zeros(len(flat), self.keys, dtype=torch.bool, device=state.device)
        for key in range(self.keys):
            logit = visible_bias[:, key] + torch.sigmoid(activation) @ self.V[key]
            frame[:, key] = choose(key, logit)
            activation = activation + frame[:, key, None].to(activation.dtype) * self.W[:, key]
        return frame.reshape(*state.shape[:-1], self.keys)

    def predict(self, state: torch.Tensor) -> torch.Tensor:
        return self._key_by_key(state, lambda key, logit: logit > 0)

    def sample(self, state: torch.Tensor, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        if temperature == 0:
            return self.predict(state)
        uniform = torch.rand(*state.shape[:-1], self.keys, generator=generator, device=state.device,
                             dtype=state.dtype).reshape(-1, self.keys)
        return self._key_by_key(state, lambda key, logit: uniform[:, key] < torch.sigmoid(logit / temperature))


def build_head(output: str, state_size: int, keys: int = 88, nade_hidden: int = 150) -> nn.Module:
    """The output distribution named by `task.model.output`."""
    if output == "nade":
        return NADEHead(state_size, keys, nade_hidden)
    return IndependentHead(state_size, keys)

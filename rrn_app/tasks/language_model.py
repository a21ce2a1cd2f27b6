"""Character language model: embedding -> recurrent encoder from the registry -> linear softmax over characters.

Trained by truncated back-propagation through time on the streams of rrn_app/data/char_lm.py: the state at
the end of window k (detached) starts window k + 1, and window 0 (every epoch, every evaluation) starts from
zeros (the carried training state goes into checkpoints: a run resumed mid-epoch carries it on). Validation
and test read the whole split the same way, so their loss is the mean negative
log-likelihood per character of the split, in nats (`loss`), bits (`bpc` = loss / ln 2) and as `perplexity`
(exp(loss)). Sampling (`sample`, `generate_files`, used by rrn-generate): temperature, top-k, a priming text
that is continued, a seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torchmetrics
from torch import nn

from rrn_app import option_checks
from rrn_app.cells.sequence import detach_state, length_mask  # noqa: F401  (detach_state: tests import it here)
from rrn_app.option_checks import UserError
from rrn_app.tasks.base import CarriedState, SequenceTask
from rrn_app.tasks.generative import Generative, check_sampling  # noqa: F401  (check_sampling: its former home)


def per_character_metrics(nats: torch.Tensor, prefix: str) -> dict:
    """Mean NLL per character in nats -> {loss, bpc, perplexity} under `prefix/`."""
    return {f"{prefix}/loss": nats, f"{prefix}/bpc": nats / math.log(2), f"{prefix}/perplexity": torch.exp(nats)}


class CharLanguageModel(SequenceTask, Generative):
    """The character language model of task=char_lm; rrn-generate samples text from it."""

    GENERATE_OPTIONS: dict = {}  # rrn-generate options besides length, temperature, top_k, seed, prime: none

    def __init__(self, vocabulary: list[str], cell: dict, embedding_dim: int = 64, dropout: float = 0.0,
                 optimizer: str | dict = "adam", lr: float = 2e-3, weight_decay: float = 0.0,
                 word_boundary: str | None = None, scheduler: dict | None = None):
        super().__init__()
        option_checks.positive_int("embedding_dim", embedding_dim)
        self.check_training_options(optimizer=optimizer, lr=lr, weight_decay=weight_decay, scheduler=scheduler,
                                    dropout=dropout)
        if cell.get("bidirectional"):
            raise UserError("cell.bidirectional=true is not allowed: a language model reads left to right; "
                            "use cell.bidirectional=false")
        self.save_hyperparameters()
        self.vocabulary = list(vocabulary)
        self.stoi = {character: index for index, character in enumerate(self.vocabulary)}
        self.embedding = nn.Embedding(len(vocabulary), embedding_dim)
        self.encoder = self.build_encoder(cell, input_size=embedding_dim)
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(self.encoder.output_size, len(vocabulary))
        self.losses = nn.ModuleDict({s: torchmetrics.MeanMetric() for s in ("val", "test")})
        self.carried = CarriedState()  # per stage, the state carried to its next window

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        """Logits [batch, time, vocabulary] of each next character, and the encoder's final state."""
        outputs, state = self.encoder(self.dropout(self.embedding(ids)), lengths, state)
        return self.decoder(self.dropout(outputs)), state

    def _window(self, batch, stage: str) -> torch.Tensor:
        """Per-character NLL [real steps] of one window, the state carried in from the previous window."""
        lengths = batch["lengths"]
        logits, state = self(batch["ids"], lengths, self.carried.start(batch, stage))  # a full window: unpadded
        self.carried.carry(state, stage)
        mask = length_mask(lengths, batch["ids"].shape[1])
        return nn.functional.cross_entropy(logits[mask], batch["targets"][mask], reduction="none")

    def on_train_epoch_start(self):
        self.carried.clear("train")

    def training_step(self, batch, batch_index):
        loss = self._window(batch, "train").mean()
        self.log_training_loss(loss, int(batch["lengths"].sum()))
        return loss

    def evaluate(self, batch, stage: str):
        self.losses[stage].update(self._window(batch, stage))

    def log_evaluation(self, stage: str):
        self.log_epoch(per_character_metrics(self.losses[stage].compute(), stage), stage)
        self.losses[stage].reset()
        self.carried.clear(stage)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """The class (rrn-generate rebuilds it) and the vocabulary (in the hyper-parameters too). The training state
        carried to the next window goes along, so a run resumed mid-epoch continues with it."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["vocabulary"] = self.vocabulary
        checkpoint["carried_state"] = self.carried.get("train")

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.carried.set(checkpoint.get("carried_state"), "train")  # a new epoch starts afresh (on_train_epoch_start)

    def on_train_start(self):
        self.carried.set(self.carried.get("train"), "train", self.device)  # loaded on the CPU

    # sampling

    def encode(self, text: str) -> list[int]:
        """Characters -> ids; a space means the word boundary on corpora that spell it (ptb_char's `_`)."""
        if self.hparams.word_boundary:
            text = text.replace(" ", self.hparams.word_boundary)
        unknown = sorted(set(text) - set(self.stoi))
        if unknown:
            raise UserError(f"prime has characters the model never saw: {''.join(unknown)!r}. Its vocabulary: "
                            f"{''.join(self.vocabulary)!r}.")
        return [self.stoi[c] for c in text]

    def decode(self, ids) -> str:
        text = "".join(self.vocabulary[i] for i in ids)
        return text.replace(self.hparams.word_boundary, " ") if self.hparams.word_boundary else text

    @torch.no_grad()
    def sample(self, length: int = 500, temperature: float = 1.0, top_k: int | None = None, seed: int = 0,
               prime: str = "") -> str:
        """The prime followed by `length` sampled characters. The same seed gives the same text; top_k=1 is
        greedy. Without a prime, sampling starts after a newline (the start of a passage)."""
        check_sampling(length, temperature, top_k, seed)
        was_training = self.training
        self.eval()
        generator = torch.Generator(device=self.device).manual_seed(seed)
        context = self.encode(prime or "") or [self.stoi.get("\n", 0)]
        logits, state = self(torch.tensor([context], device=self.device))
        sampled = []
        for _ in range(length):
            scores = logits[0, -1] / temperature
            if top_k is not None and top_k < len(scores):
                threshold = torch.topk(scores, top_k).values[-1]
                scores = scores.masked_fill(scores < threshold, float("-inf"))
            next_id = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=generator))
            sampled.append(next_id)
            logits, state = self(torch.tensor([[next_id]], device=self.device), None, state)
        self.train(was_training)
        return (prime or "") + self.decode(sampled)

    def generate_files(self, out_dir: Path, options: dict) -> list[Path]:
        """rrn-generate: print a sample and save it as <out_dir>/sample-seed<seed>[-n].txt."""
        text = self.sample(options["length"], options["temperature"], options["top_k"], options["seed"],
                           options["prime"] or "")
        print(text, flush=True)
        from rrn_app.sample_io import write_text

        return [write_text(text, out_dir, f"sample-seed{options['seed']}")]

"""Polyphonic music modelling: predict frame t from frames 0..t-1, a distribution over the 88 keys of a frame.

Model: the previous frame (88 binary keys; the zero frame before a piece's first frame), optionally through a
linear layer of `input_size` units, -> encoder from the registry -> dropout -> the output distribution of the
frame given that state, `output` (rrn_app/tasks/heads.py): `independent`, 88 independent Bernoulli keys (a linear
layer to 88 logits, binary cross-entropy), or `nade`, RNN-NADE's autoregressive distribution over the keys
(`nade_hidden` units). Loss: the exact NLL of each frame, summed over the keys, averaged over real frames.

Metrics (`FrameMetrics`), over all frames of a split (frame-weighted, not piece-weighted):
- `nll`: negative log-likelihood in nats per time step, summed over the 88 keys, as Boulanger-Lewandowski et
  al. (2012) and Chung et al. (2014) report it. Every frame counts, the first of each piece included (predicted
  from the zero frame and the zero state), as in Boulanger-Lewandowski et al.; with `skip_first_frame`,
  validation and test leave each piece's first frame out, as TCN's evaluation (Bai et al. 2018) does.
- `frame_acc`: the frame-level accuracy of Bay et al. (2009), TP / (TP + FP + FN) summed over all frames,
  a key predicted on where its probability exceeds 0.5 (nade: key by key, given the keys predicted before it).

Training runs over windows with the state carried (detached) from one window of a piece to the next
(rrn_app/data/music.py); validation and test run over whole pieces, padding masked.

Generation (`generate_files`, also used by `rrn-generate`): frames are sampled autoregressively, each from the
output distribution (independent: each key a Bernoulli draw from sigmoid(logit / temperature); nade: key by key,
each key's conditional logit divided by the temperature), after a primer; the result is written as MIDI, a
piano-roll PNG and a WAV (rrn_app/sample_io.py). `SampleEveryEpoch` (rrn_app/callbacks.py) writes one such sample at the end of
every validation epoch under `<run dir>/samples/` (the WAV only for the best and the last epoch by default:
`sample_audio`) and logs it to W&B or TensorBoard when that logger is on.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from rrn_app import option_checks
from rrn_app.callbacks import SampleEveryEpoch, log_sample, log_to_wandb  # noqa: F401  (their former home)
from rrn_app.cells.sequence import length_mask
from rrn_app.data.music import DATASETS, KEYS, dataset_path, load_pieces, shifted
from rrn_app.option_checks import InvalidOption, UserError
from rrn_app.tasks.base import CarriedState, SequenceTask
from rrn_app.tasks.generative import DEFAULT_PRIME_FRAMES, PRIME_SPLITS, Generative, parse_prime  # noqa: F401
from rrn_app.tasks.heads import OUTPUTS, build_head
from rrn_app.tasks.music_metrics import FrameMetrics, frame_nll  # noqa: F401  (frame_nll: its former home)

SAMPLE_AUDIO = ("best_last", "every", "never")  # which per-epoch samples get a WAV (SampleEveryEpoch)


class MusicModel(SequenceTask, Generative):
    """The model of task=music; rrn-generate samples pieces from it. Its own schedule (`scheduler=default`):
    the learning rate times `lr_decay` whenever val/nll has not improved for `lr_patience` epochs."""

    # rrn-generate's options for music (besides ckpt, out, temperature, top_k, seed, prime); see generate_files
    GENERATE_OPTIONS = {"length": 128, "name": None, "data_root": None, "wav": True, "samples": 1, "stats": False}

    def __init__(self, cell: dict, dataset: str = "jsb_chorales", beats_per_frame: float = 1.0, tempo: float = 120.0,
                 data_path: str | None = None, input_size: int | None = None, dropout: float = 0.3,
                 optimizer: str | dict = "adam", lr: float = 1e-2, weight_decay: float = 0.0, lr_decay: float | None = 0.5,
                 lr_patience: int = 1, sample_every_epoch: bool = True, sample_length: int = 64,
                 sample_temperature: float = 1.0, sample_prime: str = "valid:0:16", sample_seed: int = 0,
                 sample_audio: str = "best_last", output: str = "independent", nade_hidden: int = 150,
                 skip_first_frame: bool = False, scheduler: dict | None = None):
        super().__init__()
        option_checks.one_of("skip_first_frame", skip_first_frame, (True, False))
        option_checks.one_of("output", output, OUTPUTS)
        option_checks.positive_int("nade_hidden", nade_hidden)
        option_checks.one_of("dataset", dataset, tuple(DATASETS))
        option_checks.positive_float("beats_per_frame", beats_per_frame)
        option_checks.positive_float("tempo", tempo)
        if input_size is not None:
            option_checks.positive_int("input_size", input_size)
        self.check_training_options(optimizer=optimizer, lr=lr, weight_decay=weight_decay, scheduler=scheduler,
                                    dropout=dropout)
        if lr_decay is not None and not 0 < lr_decay < 1:
            raise InvalidOption("lr_decay", lr_decay, "must be a factor in (0, 1), or null for a constant rate")
        option_checks.positive_int("lr_patience", lr_patience)
        option_checks.one_of("sample_every_epoch", sample_every_epoch, (True, False))
        option_checks.one_of("sample_audio", sample_audio, SAMPLE_AUDIO)
        option_checks.positive_int("sample_length", sample_length)
        option_checks.non_negative_float("sample_temperature", sample_temperature)
        parse_prime(sample_prime, "sample_prime")
        self.save_hyperparameters()
        self.input_layer = nn.Linear(KEYS, input_size) if input_size else nn.Identity()
        self.encoder = self.build_encoder(cell, input_size=input_size or KEYS)
        if self.encoder.bidirectional:
            raise UserError("cell.bidirectional=true is not allowed for task=music: a frame is predicted from the "
                            "frames before it only. Use cell.bidirectional=false.")
        self.dropout = nn.Dropout(dropout)
        self.output_layer = build_head(output, self.encoder.output_size, KEYS, nade_hidden)  # the frame's distribution
        # keyed by "<stage>/" because a ModuleDict key may not shadow nn.Module.train
        self.metrics = nn.ModuleDict({f"{stage}/": FrameMetrics() for stage in ("train", "val", "test")})
        self.carried = CarriedState()  # from one training window to the next
        self._pieces = None  # the dataset's pieces, loaded when a primer needs them

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        """What the output distribution of each next frame is conditioned on, [batch, time, encoder output size]
        (the encoder's outputs after dropout: `self.output_layer.nll/sample/predict` take it), and the final
        state. A length of 0 (a piece that has ended before this window) runs one padded step whose outputs the
        caller masks."""
        if lengths is not None:
            lengths = lengths.clamp(min=1)
        outputs, state = self.encoder(self.input_layer(inputs), lengths, state)
        return self.dropout(outputs), state

    def _score(self, stage: str, conditions: torch.Tensor, batch: dict) -> torch.Tensor:
        """The batch's summed frame NLL (padding excluded), also added to the stage's metrics."""
        lengths, targets = batch["lengths"], batch["targets"]
        mask = length_mask(lengths.to(targets.device), targets.shape[1])
        nll = self.output_layer.nll(conditions, targets, mask).sum()
        with torch.no_grad():  # the frame accuracy's prediction, of real frames only
            predicted = torch.zeros_like(targets, dtype=torch.bool)
            predicted[mask] = self.output_layer.predict(conditions.detach()[mask])
        self.metrics[f"{stage}/"].update(None, targets, lengths, nll=nll.detach(), predicted=predicted)
        return nll

    def training_step(self, batch, batch_index):
        conditions, state = self(batch["inputs"], batch["lengths"], self.carried.start(batch, "train"))
        self.carried.carry(state, "train")  # a group's windows share their rows
        frames = batch["lengths"].sum()
        nll = self._score("train", conditions, batch)
        loss = nll / frames.clamp(min=1)  # DDP: a rank's window may be empty
        self.log_training_loss(loss, max(int(frames), 1))
        return loss

    def on_train_epoch_start(self):
        self.carried.clear("train")

    def on_train_epoch_end(self):
        self.log_evaluation("train")

    def log_evaluation(self, stage: str):
        values = self.metrics[f"{stage}/"].compute()
        self.log_epoch({f"{stage}/{name}": value.float() for name, value in values.items()}, stage)
        self.metrics[f"{stage}/"].reset()

    def _evaluated(self, conditions: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict]:
        """Validation/test's frames to score: all, or with `skip_first_frame` each piece's frames after its first."""
        if not self.hparams.get("skip_first_frame"):
            return conditions, batch
        return conditions[:, 1:], {**batch, "targets": batch["targets"][:, 1:],
                                   "lengths": (batch["lengths"] - 1).clamp(min=0)}

    def evaluate(self, batch, stage: str):
        conditions, _ = self(batch["inputs"], batch["lengths"])
        self._score(stage, *self._evaluated(conditions, batch))

    def default_schedule(self, optimizer):
        """With `lr_decay`, the learning rate times `lr_decay` whenever val/nll has not improved for `lr_patience`
        epochs (ReduceLROnPlateau); with lr_decay null, a constant rate."""
        if self.hparams.lr_decay is None:
            return None
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=self.hparams.lr_decay,
                                                               patience=self.hparams.lr_patience)
        return {"scheduler": scheduler, "monitor": "val/nll"}

    def configure_callbacks(self):
        """The per-epoch sample, once: not again for the validate/test after fit (Lightning would say that it
        replaces the one it already has)."""
        if not self.hparams.sample_every_epoch or any(isinstance(callback, SampleEveryEpoch)
                                                      for callback in self.trainer.callbacks):
            return []
        return [SampleEveryEpoch()]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """What `rrn-generate` reads: the class to load, and the dataset and timing of the frames. Also what a run
        resumed mid-epoch needs: the state carried to the next window and the epoch's training metric sums."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["music"] = {"dataset": self.hparams.dataset, "beats_per_frame": self.hparams.beats_per_frame,
                               "tempo": self.hparams.tempo, "data_path": self.hparams.data_path}
        checkpoint["carried_state"] = self.carried.get("train")
        train = self.metrics["train/"]
        checkpoint["train_metric_sums"] = {name: getattr(train, name).clone() for name in train._defaults}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.carried.set(checkpoint.get("carried_state"), "train")  # a new epoch starts afresh (on_train_epoch_start)
        self._train_sums = checkpoint.get("train_metric_sums")

    def on_train_start(self):
        """After a resume: the carried state and the epoch's metric sums, on this device."""
        self.carried.set(self.carried.get("train"), "train", self.device)
        sums, self._train_sums = getattr(self, "_train_sums", None), None
        if self.trainer.fit_loop.restarted_mid_epoch and sums:
            train = self.metrics["train/"]
            for name, value in sums.items():
                setattr(train, name, value.to(getattr(train, name).device))

    # ---- generation ----

    def primer(self, prime, seed: int = 0, data_root: str | None = None) -> torch.Tensor:
        """The frames a sample starts from, bool [frames, 88] (no frames for `none`). See `parse_prime`.

        `random`: one frame drawn (with `seed`) from the non-empty frames of the test pieces.
        """
        kind, index, frames = parse_prime(prime)
        if kind == "none":
            return torch.zeros(0, KEYS, dtype=torch.bool)
        pieces = self._load_pieces(data_root)
        if kind == "random":
            frames_all = torch.cat(pieces["test"])
            sounding = frames_all[frames_all.any(-1)]
            choice = torch.randint(len(sounding), (1,), generator=torch.Generator().manual_seed(seed))
            return sounding[choice]
        split = pieces[PRIME_SPLITS[kind]]
        if index >= len(split):
            raise InvalidOption("prime", prime, f"the {kind} split of {self.hparams.dataset} has {len(split)} "
                                f"pieces: the piece index must be 0..{len(split) - 1}")
        return split[index][:frames]

    def _load_pieces(self, data_root: str | None):
        if self._pieces is None:
            path = dataset_path(data_root, self.hparams.dataset) if data_root else Path(self.hparams.data_path or "")
            if not path.is_file():
                raise UserError(f"the primer needs the {self.hparams.dataset} pieces, and {path} is not there: give "
                                "data_root=<folder holding polyphonic/>, or prime=none to start from nothing.")
            self._pieces = load_pieces(path)
        return self._pieces

    @torch.no_grad()
    def sample(self, primer: torch.Tensor, length: int, temperature: float = 1.0, seed: int = 0) -> torch.Tensor:
        """The primer followed by `length` sampled frames: bool [len(primer) + length, 88].

        Each new frame is drawn from the output distribution (`output_layer.sample`): independent, each key a
        Bernoulli draw from sigmoid(logit / temperature); nade, key by key from its conditional, the logit divided
        by the temperature. Temperature 0 takes each key's likelier value. The same seed gives the same frames.
        """
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        was_training = self.training
        self.eval()
        try:
            state, frames = None, [frame for frame in primer.to(self.device)]
            if len(primer):  # run over the primer; its last frame is the next input
                _, state = self(shifted(primer.float().to(self.device))[None])
                previous = primer[-1].float().to(self.device)
            else:
                previous = torch.zeros(KEYS, device=self.device)
            for _ in range(length):
                conditions, state = self(previous[None, None], None, state)
                frame = self.output_layer.sample(conditions[0, -1], temperature, generator)
                frames.append(frame)
                previous = frame.float()
        finally:
            self.train(was_training)
        return torch.stack(frames).cpu() if frames else torch.zeros(0, KEYS, dtype=torch.bool)

    def generate_files(self, out_dir: Path, options: dict) -> list[Path]:
        """Sample a piece and write `<name>.mid`, `<name>.png` and `<name>.wav` in `out_dir` (`<name>-1` ... when
        those exist: nothing earlier is overwritten); returns the paths.

        options: length (frames to sample after the primer, default 128), temperature (default 1.0), seed
        (default 0), prime (see `parse_prime`; default none), name (file stem, default `sample-seed<seed>`),
        data_root (the folder holding polyphonic/, for a primer; default the training run's data), wav (default
        true), samples (how many pieces, default 1: seeds seed, seed + 1, ...), stats (default false; true: also
        `stats.json` and `stats.png`, rrn_app/music_stats.py: the sampled frames, primers left out, against the
        dataset's training and test pieces). top_k does not apply to binary keys and is ignored (with a warning).
        """
        count = option_checks.positive_int("samples", 1 if options.get("samples") is None else options["samples"])
        stats = False if options.get("stats") is None else options["stats"]
        if not isinstance(stats, bool):
            raise InvalidOption("stats", stats, "must be true or false (true: also stats.json and stats.png)")
        seed, paths, sampled = int(options.get("seed") or 0), [], []
        for offset in range(count):
            roll, written = self.sample_files(out_dir, {**options, "seed": seed + offset})
            sampled.append(roll[len(roll) - int(options.get("length") or 128):])
            paths += written
        if stats:
            from rrn_app import music_stats
            from rrn_app.sample_io import unused_stem

            label = f"{self.hparams.cell['name']}, {self.hparams.get('output', 'independent')} output"
            about = {"dataset": self.hparams.dataset, "output": self.hparams.get("output", "independent"),
                     "cell": self.hparams.cell["name"], "length": int(options.get("length") or 128),
                     "temperature": options.get("temperature"), "prime": options.get("prime"), "first_seed": seed}
            paths += music_stats.write_report(unused_stem(Path(out_dir), "stats", (".json", ".png")), sampled,
                                              self._load_pieces(options.get("data_root")), label, about)
        return paths

    def sample_files(self, out_dir: Path, options: dict) -> tuple[torch.Tensor, list[Path]]:
        """generate_files, also returning the sampled frames (the per-epoch sample writes some WAVs later)."""
        from rrn_app import sample_io

        length = option_checks.positive_int("length", 128 if options.get("length") is None else options["length"])
        temperature = options.get("temperature")
        temperature = option_checks.non_negative_float("temperature", 1.0 if temperature is None else float(temperature))
        seed = int(options.get("seed") or 0)
        if options.get("top_k"):
            warnings.warn("top_k does not apply to music (every key is a binary draw); it is ignored.")
        primer = self.primer(options.get("prime"), seed, options.get("data_root"))
        roll = self.sample(primer, length, temperature, seed)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = sample_io.unused_stem(out_dir, str(options.get("name") or f"sample-seed{seed}"), (".mid", ".png", ".wav"))
        seconds = sample_io.frame_seconds(self.hparams.beats_per_frame, self.hparams.tempo)
        output = self.hparams.get("output", "independent")
        title = (f"{DATASETS[self.hparams.dataset].title}, {self.hparams.cell['name']}"
                 f"{', NADE output' if output == 'nade' else ''}: {len(primer)} primer + "
                 f"{length} sampled frames, temperature {temperature:g}, seed {seed}")
        paths = [sample_io.write_midi(roll, stem.with_suffix(".mid"), seconds, self.hparams.tempo),
                 sample_io.write_png(roll, stem.with_suffix(".png"), seconds, title, primer_frames=len(primer))]
        if options.get("wav", True):
            paths.append(self.write_wav(roll, stem.with_suffix(".wav")))
        return roll, paths

    def write_wav(self, roll: torch.Tensor, path: Path) -> Path:
        """The frames as a WAV at this model's frame timing (about 1.8 MB for the default JSB sample, 40 s)."""
        from rrn_app import sample_io

        seconds = sample_io.frame_seconds(self.hparams.beats_per_frame, self.hparams.tempo)
        return sample_io.write_wav(roll, path, seconds, self.hparams.tempo)

"""Shared fixtures (the plain helpers are in helpers.py). Data: RRN_DATA_ROOT's full datasets if set (CI), else small real samples (tests/fixtures/)
plus the copies embedded in the package; never a skip for lack of data. Tests use one torch thread."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the rrn-train processes the tests start
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.pop("WANDB_API_KEY", None)

import torch  # noqa: E402

torch.set_num_threads(1)

from helpers import (  # noqa: E402,F401  (re-exported: older tests import them from conftest)
    FIXTURES, FULL_DATA, NEEDS_FULL_DATA, QUICK, REPO, BatchRecorder, located, make_plugin, run_cli, run_dir_of,
    run_epochs,
)


def assemble_fixture_root(target: Path) -> Path:
    """A data root made of tests/fixtures/: ATIS, IMDB, PTB characters and three music pickles (expanded from
    .pickle.gz). SST, GloVe, Tiny Shakespeare and JSB Chorales are absent, so they come from the embedded copies."""
    for name in ("atis", "imdb", "ptb_char"):
        shutil.copytree(FIXTURES / name, target / name)
    (target / "polyphonic").mkdir()
    for packed in sorted((FIXTURES / "polyphonic").glob("*.pickle.gz")):
        with gzip.open(packed, "rb") as source, open(target / "polyphonic" / packed.stem, "wb") as out:
            shutil.copyfileobj(source, out)
    return target


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """The data root the tests train on: RRN_DATA_ROOT (full data) if set, else one assembled from the fixtures."""
    if FULL_DATA:
        root = Path(FULL_DATA).resolve()
        if not (root / "sst" / "train.txt").is_file():
            pytest.fail(f"RRN_DATA_ROOT={FULL_DATA} holds no sst/train.txt; point it at a full data root or unset it")
        return root
    return assemble_fixture_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def full_data(data_root) -> Path:
    """The data root, for the checks of the full datasets' published counts (skipped on the fixtures)."""
    if not FULL_DATA:
        pytest.skip(NEEDS_FULL_DATA)
    return data_root


@pytest.fixture(scope="session")
def glove_path(data_root) -> Path:
    """The GloVe file the SST task reads: the full 50-d file, or the embedded rows of SST's words."""
    return located(data_root, "glove") / "glove" / "glove.6B.50d.filtered.txt.gz"


@pytest.fixture
def quick() -> list[str]:
    """The tiny-budget overrides of a quick run (helpers.QUICK: one epoch of two batches, one thread, no logger);
    a fresh list, so a test may extend it."""
    return list(QUICK)


@pytest.fixture
def compose_config(tmp_path):
    """Compose the rrn-train config in-process, as the command line would, with the run dir in tmp_path."""
    from hydra import compose, initialize_config_dir

    from rrn_app.config import config_dir, register_plugin_cells

    def compose_with(*overrides: str):
        register_plugin_cells()
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose(config_name="config", overrides=[f"run_dir={tmp_path / 'run'}", *overrides])

    return compose_with

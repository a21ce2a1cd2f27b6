"""The datasets rrn knows: where each lives under `data.root`, its canonical source, checksums, licence.

One entry per name that `rrn-data` and the tasks use. `files` are paths relative to the data root, in the
layout the loaders read; `sha256` holds the checksums we know of those files (the canonical splits as rrn
reads them); `embedded` says whether a small real copy ships inside the package (used when the user's
`data.root` lacks the dataset); `sources` are the dataset owners' canonical downloads.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from rrn_app.option_checks import UserError


@dataclass(frozen=True)
class Dataset:
    name: str                       # what `rrn-data get NAME` and the error messages say
    title: str                      # one line for `rrn-data list`
    files: tuple[str, ...]          # relative to the data root, in the layout the loaders read
    sources: tuple[str, ...]        # the owner's canonical download(s), https
    citation: str
    licence: str
    sha256: dict[str, str] = field(default_factory=dict)   # file -> checksum, where known
    embedded: bool = False          # a copy ships with the package (rrn_app/data/embedded/)
    embedded_note: str = ""         # how the embedded copy differs from the full dataset, if it does
    embedded_sha256: dict[str, str] = field(default_factory=dict)  # file -> checksum of the expanded embedded
                                                                    # copy, where it differs from `sha256`
    tasks: tuple[str, ...] = ()     # the rrn tasks that read it

    @property
    def folder(self) -> str:
        """The folder under the data root that holds the dataset (sst, imdb, polyphonic, ...)."""
        return self.files[0].split("/", 1)[0]


EMBEDDED_DIR = Path(__file__).resolve().parent / "embedded"


def embedded_path(name: str, relative: str) -> Path:
    """The packaged copy of one file of an embedded dataset: embedded/<name>/<file name>, gzip'd (.gz added
    unless the file is a .gz already, which is then shipped as it is read)."""
    file_name = relative.rsplit("/", 1)[-1]
    return EMBEDDED_DIR / name / (file_name if file_name.endswith(".gz") else file_name + ".gz")


_MUSIC_CITATION = ("Boulanger-Lewandowski, Bengio & Vincent, ICML 2012, \"Modeling Temporal Dependencies in "
                   "High-Dimensional Sequences\"")
_MUSIC_SOURCE = "https://www-etud.iro.umontreal.ca/~boulanni/"

DATASETS: dict[str, Dataset] = {
    dataset.name: dataset
    for dataset in (
        Dataset(
            "sst", "Stanford Sentiment Treebank, PTB-format trees (8,544 / 1,101 / 2,210 sentences)",
            ("sst/train.txt", "sst/dev.txt", "sst/test.txt"),
            ("https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip",),
            "Socher et al., EMNLP 2013", "research use (Stanford NLP)",
            {"sst/train.txt": "e2f3f41b0b1e6d4dddc0effe3bfc2d27ed8928079aa9a03d652311614fc5feb7",
             "sst/dev.txt": "0e9336aed6e4730e19f58d00a77b3f0297efdb755f7b5e598c98a05e3f97ea40",
             "sst/test.txt": "6e54806dee95cf80cd918e7dfb3f6770f6df24bf826f289a4d1f709e1c8f6761"},
            embedded=True, tasks=("sst",)),
        Dataset(
            "glove", "GloVe 6B 50-d word vectors (embedded copy: the rows of SST's words only)",
            ("glove/glove.6B.50d.filtered.txt.gz",),
            ("https://nlp.stanford.edu/data/glove.6B.zip",),
            "Pennington, Socher & Manning, EMNLP 2014", "ODC PDDL 1.0",
            {"glove/glove.6B.50d.filtered.txt.gz": "af8e669043e2429f60ccf7dba4765d8515e8208b53f34f3744500f3910f0a136"},
            embedded=True, tasks=("sst", "imdb", "atis"), embedded_note="SST's words only",
            embedded_sha256={"glove/glove.6B.50d.filtered.txt.gz":
                             "66efbffd0550248594a350e7904f89e4ee2c668bbac5ae6c4e7ec1aedcfbc0ac"}),
        Dataset(
            "imdb", "IMDB Large Movie Review Dataset v1.0 (25,000 train / 25,000 test reviews, 50,000 unlabelled)",
            ("imdb/train.jsonl.gz", "imdb/test.jsonl.gz", "imdb/unsup.jsonl.gz"),
            ("https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",),
            "Maas et al., ACL 2011", "none stated; cite Maas et al. 2011",
            {"imdb/train.jsonl.gz": "5e81705d7f81a8de01443bf7489fc202898ee27a0c27a519a5c1384dce3a4d1b",
             "imdb/test.jsonl.gz": "20c384cb378730b111818878790c408f8998142ae50222e70a7a43c5787b27ac",
             "imdb/unsup.jsonl.gz": "500d14ad6c5ab503cab59396872cb08814d6ba377be9b046aa8568064e16e17f"},
            tasks=("imdb",)),
        Dataset(
            "atis", "ATIS slot filling and intent detection, Goo et al. 2018's split (4,478 / 500 / 893)",
            tuple(f"atis/{split}/{name}" for split in ("train", "valid", "test") for name in ("seq.in", "seq.out", "label")),
            ("https://raw.githubusercontent.com/MiuLab/SlotGated-SLU/master/data/atis/",),
            "Goo et al., NAACL 2018; Hemphill et al. 1990 (ATIS)", "none stated; LDC ATIS corpora, research use",
            {"atis/test/label": "ce4bfe6590d9498e1078f30b4137d3e8b3e94277b444b26360c0bf2e9e282761",
             "atis/test/seq.in": "4b2119fc59c37f9398c6605db435d4f467505009e6ee3e5af04fed09f39dc397",
             "atis/test/seq.out": "a4690d6bceadc06876d1ff99bc401744aa981cb321e598ae12a3859d7be53254",
             "atis/train/label": "d0a771547665eecbdf9f96ea015ef07d1f6ee9f063e861020dafabb3c2a04377",
             "atis/train/seq.in": "3a670980841b21ab39088b2595efc17d487cdc45769c075a3e5f9458bba28c7f",
             "atis/train/seq.out": "14c7131bd66562f797dbd7189bc7358f0cf354c6afb0785a9ab973c35b58f34c",
             "atis/valid/label": "06957cfe6fdffac84f8280bc3a1f8ca85c85631b363817aa4543aac611f8addf",
             "atis/valid/seq.in": "c7435b96e7948393608c34819628e863c5338f11ca68e8f896d2cc041d8e17f8",
             "atis/valid/seq.out": "83ccff3e36f83a993f8e5b5b82adf3256076f234abda4d784051381d7ac76922"},
            tasks=("atis",)),
        Dataset(
            "tinyshakespeare", "Tiny Shakespeare (char-rnn), 1,115,394 characters",
            ("tinyshakespeare/input.txt",),
            ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",),
            "Karpathy, char-rnn (2015)", "MIT (char-rnn); the plays are public domain",
            {"tinyshakespeare/input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"},
            embedded=True, tasks=("char_lm",)),
        Dataset(
            "ptb_char", "Penn Treebank, character level (Mikolov's ptb.char.*; 5.0M / 393k / 442k characters)",
            ("ptb_char/ptb.char.train.txt", "ptb_char/ptb.char.valid.txt", "ptb_char/ptb.char.test.txt"),
            ("https://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",),
            "Marcus et al. 1993; Mikolov et al. 2012", "LDC Penn Treebank-3; research use",
            {"ptb_char/ptb.char.train.txt": "e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
             "ptb_char/ptb.char.valid.txt": "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
             "ptb_char/ptb.char.test.txt": "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe"},
            tasks=("char_lm",)),
        Dataset(
            "jsb_chorales", "JSB Chorales piano rolls, quarter-note frames (229 / 76 / 77 chorales)",
            ("polyphonic/jsb_chorales.pickle",), (_MUSIC_SOURCE + "JSB%20Chorales.pickle",),
            _MUSIC_CITATION, "none stated; cite Boulanger-Lewandowski et al. 2012",
            {"polyphonic/jsb_chorales.pickle": "6044d47e3eff9f82c59eda06f87e604b9cf7eca6a9900d33d4af20e7074de067"},
            embedded=True, tasks=("music",)),
        Dataset(
            "nottingham", "Nottingham folk tunes piano rolls, eighth-note frames (694 / 173 / 170 tunes)",
            ("polyphonic/nottingham.pickle",), (_MUSIC_SOURCE + "Nottingham.pickle",),
            _MUSIC_CITATION, "none stated; cite Boulanger-Lewandowski et al. 2012",
            {"polyphonic/nottingham.pickle": "a67890a3e1e5176ba7026585bc5cf681110d32740b7405157d65ba929a54f867"},
            tasks=("music",)),
        Dataset(
            "musedata", "MuseData piano rolls (524 / 135 / 124 pieces)",
            ("polyphonic/musedata.pickle",), (_MUSIC_SOURCE + "MuseData.pickle",),
            _MUSIC_CITATION, "none stated; cite Boulanger-Lewandowski et al. 2012",
            {"polyphonic/musedata.pickle": "cf0d99bcc381f12ca5fb09e25bc11db9d6361dad6808cbe1ebfdf8298cf016e1"},
            tasks=("music",)),
        Dataset(
            "piano_midi", "Piano-midi.de piano rolls (87 / 12 / 25 pieces)",
            ("polyphonic/piano_midi.pickle",), (_MUSIC_SOURCE + "Piano-midi.de.pickle",),
            _MUSIC_CITATION, "none stated; cite Boulanger-Lewandowski et al. 2012",
            {"polyphonic/piano_midi.pickle": "cd7f8fda6191132fe89c5d87b4e30be0615767b5b3939b6b5592cc88dc483cc8"},
            tasks=("music",)),
    )
}


def get_dataset(name: str) -> Dataset:
    """The catalog entry of `name`, or a UserError listing the known names and the closest one."""
    if name in DATASETS:
        return DATASETS[name]
    close = difflib.get_close_matches(name, DATASETS, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    raise UserError(f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(DATASETS)}.")

"""The Stanford Sentiment Treebank (Socher et al. 2013) as a LightningDataModule.

Reads `<root>/sst/{train,dev,test}.txt` (PTB-format trees, trainDevTestTrees_PTB) through Hugging Face
`datasets`, which caches the parsed splits. Training (`train_on`) uses every labelled phrase of the training
trees, each distinct phrase once (`phrases`: 159,274; Pradhan & Longpre report 166,743), every labelled node
of every training tree with duplicates kept (`nodes`: 318,582, the loss of Tai et al. 2015), or the
sentences only (`sentences`); validation and test use full sentences, as in the paper. Labels: 5 classes
(0 very negative .. 4 very positive), or binary with neutral dropped (0-1 -> 0, 3-4 -> 1).

Vocabulary (`vocabulary`, rrn_app/data/vector_vocabulary.py): `vectors` (the default, Tai et al.'s pipeline)
holds the training words and every word of any split that has a pretrained vector, so 0.75% of the test
tokens (316 of 42,405, in 288 of the 2,210 sentences) are `<unk>`; `train` holds the training words only,
and 5.25% are (2,225 tokens, in 1,240 sentences; 1,909 of them have a GloVe vector). No labels are read to
build it. A checkpoint's vocabulary, given to `load_state_dict` before `setup`, is used as it is (rrn-eval
reads runs from before this option, whose vocabulary is the training words').
"""

from __future__ import annotations


from rrn_app import option_checks
from rrn_app.data.cache import cached_dataset
from rrn_app.data.columns import arrow_table, in_memory_dataset, list_lengths
from rrn_app.data.locate import dataset_root
from rrn_app.data.sst_trees import MalformedTreeError, parse_tree
from rrn_app.data.text import Vocabulary, require_vectors
from rrn_app.data.vector_vocabulary import MODES, build_vocabulary
from rrn_app.data.words import WordDataModule
from rrn_app.option_checks import UserError

SOURCE_URL = "https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip"
SPLITS = {"train": "train.txt", "validation": "dev.txt", "test": "test.txt"}
_UNESCAPE = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}


def normalise(token: str, lowercase: bool) -> str:
    token = _UNESCAPE.get(token, token).replace("\\/", "/").replace("\\*", "*")
    return token.lower() if lowercase else token


def read_examples(path: str, which: str, binary: bool, lowercase: bool):
    """Rows {tokens, label} of one split file: each tree's sentence (`which="sentences"`), each distinct
    labelled phrase once (`"phrases"`), or every labelled node of every tree (`"nodes"`)."""
    phrases = which != "sentences"
    seen = set()
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                nodes = parse_tree(line)
            except MalformedTreeError as error:
                raise UserError(f"{path} line {number} is not a sentiment tree ({error}); is the file corrupt?") from None
            for label, words in (nodes if phrases else nodes[-1:]):
                if binary and label == 2:
                    continue
                if which == "phrases":  # each distinct phrase once; sentences are never merged
                    if tuple(words) in seen:
                        continue
                    seen.add(tuple(words))
                yield {"tokens": [normalise(word, lowercase) for word in words],
                       "label": int(label > 2) if binary else label}


class SSTDataModule(WordDataModule):
    def __init__(self, root: str = "data", train_on: str = "phrases", classes: int = 5, batch_size: int = 128,
                 lowercase: bool = True, min_freq: int = 1, vectors: str | None = None, embedding_dim: int = 300,
                 cache_dir: str | None = None, num_workers: int = 0, seed: int = 0, vocabulary: str = "vectors"):
        super().__init__()
        self.train_on = option_checks.one_of("train_on", train_on, ("phrases", "sentences", "nodes"))
        self.vocabulary_mode = option_checks.one_of("vocabulary", vocabulary, MODES)
        self.classes = option_checks.one_of("classes", classes, (5, 2))
        self.batch_size = option_checks.positive_int("batch_size", batch_size)
        self.min_freq = option_checks.positive_int("min_freq", min_freq)
        self.embedding_dim = option_checks.positive_int("embedding_dim", embedding_dim)
        self.lowercase, self.vectors, self.cache_dir = lowercase, vectors, cache_dir
        self.num_workers, self.seed = num_workers, seed
        self.folder = dataset_root(root, "sst") / "sst"  # data.root's, else the embedded copy
        if vectors:
            require_vectors(vectors)
        self.splits = None

    @property
    def num_classes(self) -> int:
        return self.classes

    def _load_split(self, split: str):
        import datasets

        path = self.folder / SPLITS[split]
        options = dict(path=str(path.resolve()), which=self.train_on if split == "train" else "sentences",
                       binary=self.classes == 2, lowercase=self.lowercase)
        features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                      "label": datasets.Value("int64")})
        return cached_dataset(read_examples, options, [path], features, self.cache_dir, parse_tree, dataset="sst")

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        import pyarrow as pa

        raw = {split: arrow_table(self._load_split(split)) for split in SPLITS}  # whole columns, never row by row
        if self.saved_vocabulary is not None:  # a checkpoint's, given before setup (rrn-eval)
            self.vocabulary = Vocabulary(self.saved_vocabulary)
        else:
            self.vocabulary = build_vocabulary(self.vocabulary_mode, raw["train"].column("tokens"),
                                               [raw[split].column("tokens") for split in ("validation", "test")],
                                               self.min_freq, self.vectors)
        self.splits = {split: in_memory_dataset(pa.table({"ids": self.vocabulary.encode_column(table.column("tokens")),
                                                         "label": table.column("label")}))
                       for split, table in raw.items()}
        self.lengths = {split: list_lengths(arrow_table(data).column("ids")) for split, data in self.splits.items()}
        self.load_embeddings()

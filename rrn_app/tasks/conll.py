"""Slot-filling scores as the conlleval script computes them, summable across batches and DDP ranks.

A chunk is (type, first token, last token) as seqeval's default (conlleval-compatible) mode finds it: an I- tag
after O, or after a chunk of another type, starts a chunk just as B- does, and a chunk ends at O, at B-, or
where the type changes. A predicted chunk is correct when its type and both ends equal a gold chunk's, so a
wrong type on any token inside a right span breaks the chunk. Precision = correct / predicted chunks, recall =
correct / gold chunks, F1 their harmonic mean (0 where a denominator is 0, as conlleval prints). seqeval
scores a corpus by joining its sentences with O in between, so chunks never cross sentences and per-sentence
counts add up to exactly its corpus score.
"""

from __future__ import annotations

import torch
import torchmetrics
from seqeval.metrics.sequence_labeling import get_entities


def chunks(tags: list[str]) -> set[tuple[str, int, int]]:
    """The chunks of one tag sequence: {(type, start, end)}, end inclusive (seqeval.get_entities, default mode)."""
    return set(get_entities(list(tags)))


def chunk_counts(gold: list[str], predicted: list[str]) -> tuple[int, int, int]:
    """(correct, predicted, gold) chunk counts of one sentence."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold tags but {len(predicted)} predicted tags")
    gold_chunks, predicted_chunks = chunks(gold), chunks(predicted)
    return len(gold_chunks & predicted_chunks), len(predicted_chunks), len(gold_chunks)


def precision_recall_f1(correct: float, predicted: float, gold: float) -> tuple[float, float, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


class SlotIntentScores(torchmetrics.Metric):
    """Slot chunk precision/recall/F1 (conlleval), token accuracy, intent accuracy and sentence accuracy.

    `update` takes tag strings per sentence, and intents as strings (None: no intent prediction). A sentence
    is right when all its tags and its intent are. All states are sums, so DDP reduces them exactly.
    """

    full_state_update = False

    def __init__(self):
        super().__init__()
        for name in ("chunks_correct", "chunks_predicted", "chunks_gold", "tokens_correct", "tokens",
                     "intents_correct", "intents", "sentences_correct", "sentences"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, gold_tags: list[list[str]], predicted_tags: list[list[str]],
               gold_intents: list[str] | None = None, predicted_intents: list[str] | None = None) -> None:
        totals = [0] * 7
        for number, (gold, predicted) in enumerate(zip(gold_tags, predicted_tags, strict=True)):
            correct, n_predicted, n_gold = chunk_counts(gold, predicted)
            right_tokens = sum(g == p for g, p in zip(gold, predicted))
            right = right_tokens == len(gold)
            if predicted_intents is not None:
                intent_right = gold_intents[number] == predicted_intents[number]
                totals[5] += intent_right
                right = right and intent_right
            for position, value in enumerate((correct, n_predicted, n_gold, right_tokens, len(gold))):
                totals[position] += value
            totals[6] += right
        self.chunks_correct += totals[0]
        self.chunks_predicted += totals[1]
        self.chunks_gold += totals[2]
        self.tokens_correct += totals[3]
        self.tokens += totals[4]
        if predicted_intents is not None:
            self.intents_correct += totals[5]
            self.intents += len(gold_tags)
        self.sentences_correct += totals[6]
        self.sentences += len(gold_tags)

    def compute(self) -> dict[str, torch.Tensor]:
        precision, recall, f1 = precision_recall_f1(
            float(self.chunks_correct), float(self.chunks_predicted), float(self.chunks_gold))
        ratio = lambda part, whole: float(part) / float(whole) if int(whole) else 0.0  # noqa: E731
        values = {"slot_f1": f1, "slot_precision": precision, "slot_recall": recall,
                  "token_acc": ratio(self.tokens_correct, self.tokens),
                  "sentence_acc": ratio(self.sentences_correct, self.sentences)}
        if int(self.intents):
            values["intent_acc"] = ratio(self.intents_correct, self.intents)
        return {name: torch.tensor(value) for name, value in values.items()}

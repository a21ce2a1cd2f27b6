"""Parser for the Stanford Sentiment Treebank in PTB bracket format.

One binarized tree per line, every node labelled 0-4: `(3 (2 The) (3 (2 Rock) (4 rules)))`. A leaf's word
is all the text between its label and its closing bracket: three training leaves hold a U+00A0 no-break
space followed by an ASCII space (`8\xa0 1\\/2`), and splitting on spaces would break them in two.
"""

from __future__ import annotations

import re

# "(3 " opens a node with its label; ")" closes one; any other run of text is a leaf word, or the
# spaces between two children
_PIECE = re.compile(r"\((\d+) |(\))|([^()]+)")


class MalformedTreeError(ValueError):
    pass


def parse_tree(line: str) -> list[tuple[int, list[str]]]:
    """Every labelled phrase of one tree as (label, tokens), in post-order: the whole sentence comes last."""
    phrases: list[tuple[int, list[str]]] = []
    stack: list[tuple[int, list[str]]] = []  # open nodes
    position = 0
    line = line.rstrip("\r\n")
    for match in _PIECE.finditer(line):
        if match.start() != position:
            raise MalformedTreeError(f"unexpected {line[position:match.start()]!r} at column {position}")
        position = match.end()
        label, close, text = match.groups()
        if label is not None:
            if int(label) > 4:
                raise MalformedTreeError(f"sentiment label {label} at column {match.start()} is outside 0-4")
            stack.append((int(label), []))
        elif close is not None:
            if not stack:
                raise MalformedTreeError(f"unbalanced ')' at column {match.start()}")
            node_label, words = stack.pop()
            if not words:
                raise MalformedTreeError(f"empty node closed at column {match.start()}")
            phrases.append((node_label, words))
            if stack:
                stack[-1][1].extend(words)
        elif text.strip(" "):
            if not stack or stack[-1][1]:
                raise MalformedTreeError(f"word {text!r} at column {match.start()} is not a leaf")
            stack[-1][1].append(text)
    if position != len(line) or stack or not phrases:
        raise MalformedTreeError("unbalanced brackets, or not a tree")
    return phrases

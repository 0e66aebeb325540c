"""InternVideo2's text input: caption normalisation and the ``[CLS] X`` BERT format.

The official stage-2 code (``models/backbones/bert/tokenization_bert.py``) builds a single
sentence as ``[CLS] X`` — no ``[SEP]`` — and the demo and the retrieval eval call it with
``padding="max_length", truncation=True, max_length=40``: at most 39 word pieces follow
``[CLS]``, and every row has 40 positions. A Hugging Face ``BertTokenizer`` gives
``[CLS] X [SEP]``; the extra token changes the output of every text layer >= 1, so the official
form is the default here and the Hugging Face form is an option (``add_sep=True``).

:func:`pre_text` is the official caption normalisation (``dataset/utils.py``), applied by the
retrieval eval and training datasets but not by the demo.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch

_PUNCT = re.compile(r"([,.'!?\"()*#:;~])")
_SPACES = re.compile(r"\s{2,}")


def pre_text(text: str, max_words: int | None = None) -> str:
    """Lower-case, drop ``, . ' ! ? " ( ) * # : ; ~``, ``-`` and ``/`` -> space, squeeze spaces.

    ``max_words`` keeps the first words only (the official ``max_l``).
    """
    text = _PUNCT.sub("", text.lower())
    text = text.replace("-", " ").replace("/", " ").replace("<person>", "person")
    text = _SPACES.sub(" ", text).rstrip("\n").strip(" ")
    if max_words:
        words = text.split(" ")
        if len(words) > max_words:
            text = " ".join(words[:max_words])
    return text


def tokenize_bert(
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    *,
    add_sep: bool = False,
    normalize: bool = False,
    pad_to_max_length: bool = True,
) -> dict[str, torch.Tensor]:
    """Token ids ``(B, L)`` and attention mask ``(B, L)`` (long) in InternVideo2's format.

    ``[CLS] X`` (``add_sep=False``, official) or ``[CLS] X [SEP]`` (Hugging Face), truncated
    to ``max_length`` ids, padded with ``[PAD]`` to ``max_length`` (official) or, with
    ``pad_to_max_length=False``, to the longest row. ``normalize`` applies :func:`pre_text`.
    """
    cls_id, sep_id, pad_id = (
        tokenizer.convert_tokens_to_ids(t)
        for t in (tokenizer.cls_token, tokenizer.sep_token, tokenizer.pad_token)
    )
    room = max_length - (2 if add_sep else 1)
    rows: list[list[int]] = []
    for text in texts:
        text = pre_text(text) if normalize else text
        ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))[:room]
        rows.append([cls_id, *ids, *([sep_id] if add_sep else [])])
    width = max_length if pad_to_max_length else max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}

"""InternVideo2's text input on real QVHighlights queries: ``[CLS] X`` to 40 ids, ``pre_text``.

Expectations are hand-derived from the official ``tokenization_bert.py`` (single sentence:
``[CLS] + ids``, no ``[SEP]``) called as the demo / retrieval eval do
(``padding="max_length", truncation=True, max_length=40``) and from ``dataset/utils.py``'s
``pre_text``; we ran the official tokenizer on these queries with this vocabulary and got them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidetune.backbones import BackboneError, create_text_backbone
from sidetune.backbones.text import load_bert_tokenizer
from sidetune.backbones.tokenization import pre_text, tokenize_bert
from tests.shared_data import shared_path

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [
    "!",
    "'",
    ",",
    "-",
    ".",
    "/",
    "1",
    "2019",
    "3",
    "a",
    "afterwards",
    "and",
    "black",
    "change",
    "class",
    "cooked",
    "each",
    "face",
    "front",
    "girl",
    "hat",
    "her",
    "high",
    "honor",
    "in",
    "is",
    "jersey",
    "man",
    "many",
    "more",
    "mother",
    "new",
    "of",
    "on",
    "other",
    "outfit",
    "people",
    "public",
    "school",
    "shirt",
    "shows",
    "society",
    "students",
    "t",
    "talking",
    "than",
    "the",
    "then",
    "to",
    "wearing",
    "while",
    "white",
    "with",
    "woman",
    "young",
    "##time",
]
VOCAB = SPECIAL + WORDS


def _vocab_dir(tmp_path: Path) -> Path:
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return tmp_path


def _queries() -> dict[int, str]:
    path = shared_path("data", "qvhighlights", "highlight_val_release.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {r["qid"]: r["query"] for r in rows if r["qid"] in (2579, 9633, 6380, 6156)}


def _ids(tokens: str) -> list[int]:
    return [VOCAB.index(t) for t in tokens.split()]


EXPECTED = {  # official: "[CLS] X", truncated to 39 word pieces after [CLS]
    2579: "[CLS] a girl and her mother cooked while talking with each other on face ##time .",
    9633: "[CLS] more than 1 / 3 of the students in a new jersey public high school class of "
    "2019 is in the honor society",
    6380: "[CLS] a man in black t - shirt and wearing a hat is talking in front of many people "
    "then change to a man in black t - shirt talking to the people afterwards change to a "
    "man in white",
    6156: "[CLS] a young woman shows her [UNK] ' outfit",  # prefix: the rest is not in VOCAB
}


def test_official_format_on_real_queries(tmp_path: Path) -> None:
    queries = _queries()
    tok = load_bert_tokenizer(_vocab_dir(tmp_path))
    enc = tokenize_bert(tok, [queries[q] for q in (2579, 9633, 6380)], 40)
    assert enc["input_ids"].shape == (3, 40)
    for row, qid in enumerate((2579, 9633, 6380)):
        want = _ids(EXPECTED[qid])
        assert enc["input_ids"][row, : len(want)].tolist() == want
        assert enc["input_ids"][row, len(want) :].eq(0).all()  # [PAD]
        assert enc["attention_mask"][row].sum() == len(want)
    assert enc["attention_mask"][2].all()  # 45 words: truncated to exactly 40 ids, no [SEP]
    six = tokenize_bert(tok, [queries[6156]], 40)["input_ids"][0]
    assert six[:9].tolist() == _ids(EXPECTED[6156])


def test_hugging_face_form_and_pre_text(tmp_path: Path) -> None:
    queries = _queries()
    tok = load_bert_tokenizer(_vocab_dir(tmp_path))
    sep = tokenize_bert(tok, [queries[2579], queries[6380]], 40, add_sep=True)["input_ids"]
    assert sep[0, :17].tolist() == [*_ids(EXPECTED[2579]), 3]  # ... ##time . [SEP]
    assert sep[1].tolist() == [*_ids(EXPECTED[6380])[:39], 3]  # 38 pieces + [SEP]: "in" last

    assert pre_text(queries[2579]) == (
        "a girl and her mother cooked while talking with each other on facetime"
    )
    assert pre_text(queries[9633]).startswith("more than 1 3 of the students in a new jersey")
    assert pre_text(queries[6156]).startswith("a young woman shows her poppin outfit consisting")
    assert pre_text("A  man -- on a <person>/bike!", max_words=3) == "a man on"
    norm = tokenize_bert(tok, [queries[2579]], 40, normalize=True)["input_ids"][0]
    assert norm[:15].tolist() == _ids(EXPECTED[2579])[:-1] and norm[15] == 0  # no "."
    longest = tokenize_bert(tok, ["a man", "a girl"], 40, pad_to_max_length=False)
    assert longest["input_ids"].tolist() == [_ids("[CLS] a man"), _ids("[CLS] a girl")]


def test_text_backbone_options_change_the_ids(tmp_path: Path) -> None:
    vocab = _vocab_dir(tmp_path)
    official = create_text_backbone("internvideo2-tiny", tokenizer=vocab)
    hf = create_text_backbone("internvideo2-tiny", tokenizer=vocab, add_sep=True)
    norm = create_text_backbone("internvideo2-tiny", tokenizer=vocab, normalize_text=True)
    text = ["A girl, her mother."]
    assert official.tokenize(text)["input_ids"][0, :8].tolist() == _ids(
        "[CLS] a girl , her mother . [PAD]"
    )
    assert hf.tokenize(text)["input_ids"][0, :7].tolist() == _ids("[CLS] a girl , her mother .")
    assert hf.tokenize(text)["input_ids"][0, 7] == 3
    assert norm.tokenize(text)["input_ids"][0, :5].tolist() == _ids("[CLS] a girl her mother")
    with pytest.raises(BackboneError, match="InternVideo2 options"):
        create_text_backbone("clip-tiny", add_sep=True)

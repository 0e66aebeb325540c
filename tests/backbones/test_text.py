"""InternVideo2 stage-2 BERT text tower: tokenizer, intermediates, released-key mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from sidetune.backbones import BackboneError, CheckpointError, create_text_backbone
from sidetune.backbones.text import InternVideo2Text, load_bert_tokenizer

WORDS = ["a", "man", "cooks", "dog", "runs", "in", "the", "park", "##s", "kitchen"]


def make_vocab(tmp_path: Path) -> Path:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    vocab += [f"[unused{i}]" for i in range(64 - len(vocab))]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return tmp_path


def test_tokenizer_and_intermediates(tmp_path: Path) -> None:
    text = create_text_backbone("internvideo2-tiny", tokenizer=make_vocab(tmp_path))
    assert text.name == "internvideo2-text-tiny" and text.depth == 3
    batch = text.tokenize(["A man cooks", "the dogs run in the kitchen"])
    ids = batch["input_ids"]
    assert ids[0, :5].tolist() == [2, 5, 6, 7, 3]  # [CLS] a man cooks [SEP]
    assert ids[0, 5:].eq(0).all() and ids[1, 0] == 2
    assert (
        "[UNK]" not in load_bert_tokenizer(tmp_path).convert_ids_to_tokens(ids[1, 1:4].tolist())[:2]
    )
    hidden, mask = text.forward_intermediates(batch["input_ids"], batch["attention_mask"], [-2, -1])
    assert hidden.shape == (2, 2, ids.shape[1], 32) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == batch["attention_mask"].sum(1).tolist()
    assert all(not p.requires_grad for p in text.parameters())
    with pytest.raises(BackboneError, match="out of range"):
        text.forward_intermediates(ids, batch["attention_mask"], [4])


def test_no_tokenizer_is_a_clear_error(tmp_path: Path) -> None:
    text = create_text_backbone("internvideo2-text-tiny")
    text.tokenizer = None  # the tiny tower ships a vocabulary; a real one needs --tokenizer
    with pytest.raises(BackboneError, match="no tokenizer"):
        text.tokenize(["x"])
    with pytest.raises(BackboneError, match="no BERT vocabulary"):
        load_bert_tokenizer(tmp_path / "nowhere")


def _full_stage2_text(tmp_path: Path) -> tuple[BertModel, torch.Tensor, Path]:
    """A 5-layer BERT (3 text + 2 fusion layers) saved with the released key names."""
    cfg = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=5, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64,
    )  # fmt: skip
    full = BertModel(cfg, add_pooling_layer=False).eval()
    sd = {f"text_encoder.bert.{k}": v for k, v in full.state_dict().items()}
    for i in (3, 4):  # fusion layers carry cross attention in the release
        sd[f"text_encoder.bert.encoder.layer.{i}.crossattention.self.query.weight"] = torch.zeros(
            32, 32
        )
    sd["text_encoder.cls.predictions.bias"] = torch.zeros(64)
    sd["vision_encoder.cls_token"] = torch.zeros(1, 1, 8)
    proj = torch.randn(16, 32)
    sd["text_proj.weight"], sd["text_proj.bias"] = proj, torch.zeros(16)
    path = tmp_path / "stage2.pt"
    torch.save({"module": sd}, path)
    return full, proj, path


def test_released_keys_load_and_match_text_mode(tmp_path: Path) -> None:
    full, proj, path = _full_stage2_text(tmp_path)
    text = create_text_backbone("internvideo2-text-tiny", checkpoint=str(path))
    assert isinstance(text, InternVideo2Text) and text.load_report is not None
    report = text.load_report
    assert report.missing == [] and report.unexpected == []
    assert any("encoder.layer.4." in k for k in report.ignored)
    ids = torch.tensor([[2, 5, 6, 7, 3, 0], [2, 8, 9, 3, 0, 0]])
    mask = (ids != 0).long()
    ref = full(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    hidden, _ = text.forward_intermediates(ids, mask, [1, 2, 3])
    for k, layer in enumerate([1, 2, 3]):  # text mode = the first 3 (fusion_layer) layers
        torch.testing.assert_close(hidden[k], ref[layer])
    projected, _ = text.forward_intermediates(ids, mask, [3], project=True)
    torch.testing.assert_close(projected[0], ref[3] @ proj.T)


def test_missing_text_keys_error(tmp_path: Path) -> None:
    _, _, path = _full_stage2_text(tmp_path)
    sd = torch.load(path, weights_only=True)["module"]
    del sd["text_encoder.bert.encoder.layer.0.output.dense.weight"]
    torch.save(sd, tmp_path / "cut.pt")
    with pytest.raises(
        CheckpointError, match=r"cut\.pt: 1 weights missing.*layer\.0\.output\.dense\.weight"
    ):
        create_text_backbone("internvideo2-text-tiny", checkpoint=str(tmp_path / "cut.pt"))

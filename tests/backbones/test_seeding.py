"""Random-weight variants are seeded from their name: two builds (and two extractions) agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sidetune.backbones import TINY_VOCAB, create_backbone, create_text_backbone, variant_seed
from sidetune.features.extract import extract_video_features
from sidetune.grounding.render import RenderConfig, layout_video, render_frames, write_mp4


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_tiny_backbones_are_identical_across_builds_and_leave_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = create_backbone("internvideo2-tiny")
    after = torch.rand(3)
    assert torch.equal(before, after)  # building did not consume the caller's random stream
    assert _same(a, create_backbone("internvideo2-tiny"))
    assert not _same(a, create_backbone("internvideo2-tiny", seed=1))
    assert _same(create_backbone("clip-tiny"), create_backbone("clip-tiny"))
    assert _same(
        create_text_backbone("internvideo2-text-tiny"), create_text_backbone("internvideo2-tiny")
    )
    assert variant_seed("internvideo2-tiny") != variant_seed("clip-tiny")


def test_two_extractions_give_identical_features(tmp_path: Path) -> None:
    cfg = RenderConfig(videos=3, size=32)
    video = layout_video(cfg, 0, 0)
    path = tmp_path / "v.mp4"
    write_mp4(path, render_frames(cfg, video), cfg.fps)
    feats = [
        extract_video_features(
            create_backbone("internvideo2-tiny"),
            path,
            clip_length=2.0,
            frames_per_clip=4,
            layers=None,
            pool="adaptive",
            batch_size=8,
            device=torch.device("cpu"),
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(feats[0], feats[1])


def test_tiny_text_tower_ships_its_vocabulary() -> None:
    assert (TINY_VOCAB / "vocab.txt").is_file()
    text = create_text_backbone("internvideo2-text-tiny")
    enc = text.tokenize(["The red circle moves left"])
    ids = enc["input_ids"][0].tolist()
    assert text.tokenizer.convert_tokens_to_ids("[UNK]") not in ids
    assert len(text.tokenizer.vocab) <= text.cfg.vocab_size  # ids fit the tiny embedding table

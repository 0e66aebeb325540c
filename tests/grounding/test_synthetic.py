"""Synthetic grounding benchmark: public layouts, determinism, real-annotation copying, and a
check that the signal is real (an oracle finds the answer; the text names the concept)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from sidetune.features.store import load_text_features, load_video_features
from sidetune.grounding import synthetic
from sidetune.grounding.annotations import load_annotations
from sidetune.grounding.synthetic import SynthConfig, SynthError, generate, write
from tests.shared_data import shared_path


def _run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    synthetic.add_arguments(parser)
    return synthetic.run(parser.parse_args(list(argv)))


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties count half."""
    diff = pos[:, None] - neg[None, :]
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def test_cli_writes_the_public_layouts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "synth"
    assert _run_cli("--out", str(out), "--videos", "14", "--layers", "3", "--video-dim", "16", "--text-dim", "12") == 0  # fmt: skip
    assert "queries (train/val/test)" in capsys.readouterr().out
    meta = json.loads((out / "synthetic.json").read_text())
    assert meta["dataset"] == "qvhighlights" and meta["text_cls"] is True
    total = 0
    for split in ("train", "val", "test"):
        ann = load_annotations(out / f"{split}.jsonl", "qvhighlights", strict=True)
        assert len(ann) == meta["queries"][split] > 0
        total += len(ann)
        for rec in ann:
            video = load_video_features(out / "video_features", rec.vid)
            text = load_text_features(out / "text_features", rec.qid)
            assert video.dtype == np.float16 and text.dtype == np.float16
            assert video.shape == (3, round(rec.duration / 2.0), 16)
            assert text.shape[0] == 3 and text.shape[2] == 12 and 5 <= text.shape[1] <= 9
            assert 20 <= rec.duration <= 150 and 1 <= len(rec.windows) <= 3
            ids = [i for s, e in rec.windows for i in range(int(s // 2), int(e // 2))]
            assert list(rec.relevant_clip_ids or ()) == ids  # windows are clip-aligned
            assert rec.saliency_scores is not None and len(rec.saliency_scores) == len(ids)
            assert all(len(s) == 3 and min(s) >= 0 and max(s) <= 4 for s in rec.saliency_scores)
    assert total == len(meta["query_concepts"])
    assert len(list((out / "text_features").iterdir())) == total


def test_layout_distractors_and_saliency_shape() -> None:
    bench = generate(SynthConfig(videos=40, seed=1))
    hard = 0
    centre_scores, edge_scores = [], []
    for video in bench.videos:
        concepts = video.clip_concepts()
        assert any(ev.query is None for ev in video.events) or len(video.queries) == 2
        for q in video.queries:
            gt = np.asarray(q.relevant_clip_ids)
            assert np.all(concepts[gt] == q.concept)  # nothing else inside a GT window
            others = concepts[(concepts >= 0) & (concepts != q.concept)]
            g, a = bench.world.concept(q.concept)
            hard += sum(bench.world.concept(int(c))[0] == g or bench.world.concept(int(c))[1] == a for c in set(others.tolist()))  # fmt: skip
            assert q.concept not in concepts[np.setdiff1d(np.arange(video.num_clips), gt)]
            scores = np.asarray(q.saliency_scores).sum(1)
            if len(scores) >= 5:
                centre_scores.append(scores[len(scores) // 2])
                edge_scores.append((scores[0] + scores[-1]) / 2)
    assert hard >= 20  # hard-negative distractors are common
    assert np.mean(centre_scores) > np.mean(edge_scores) + 2  # higher near window centres


def test_deterministic_by_seed(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write(generate(SynthConfig(videos=6, seed=5)), a)
    write(generate(SynthConfig(videos=6, seed=5)), b)
    write(generate(SynthConfig(videos=6, seed=6)), c)
    assert (a / "train.jsonl").read_bytes() == (b / "train.jsonl").read_bytes()
    assert (a / "train.jsonl").read_bytes() != (c / "train.jsonl").read_bytes()
    for vid in ("synth_00000", "synth_00005"):
        va = load_video_features(a / "video_features", vid)
        np.testing.assert_array_equal(va, load_video_features(b / "video_features", vid))
        assert not np.array_equal(va[..., :1], load_video_features(c / "video_features", vid)[..., :1])  # fmt: skip
    np.testing.assert_array_equal(load_text_features(a / "text_features", 0), load_text_features(b / "text_features", 0))  # fmt: skip
    # A video does not change when more videos are generated.
    more = generate(SynthConfig(videos=9, seed=5))
    np.testing.assert_array_equal(more.video_features(2), generate(SynthConfig(videos=6, seed=5)).video_features(2))  # fmt: skip


def test_copies_real_qvhighlights_annotations(tmp_path: Path) -> None:
    src = shared_path("data", "qvhighlights", "highlight_val_release.jsonl")
    out = tmp_path / "real"
    assert (
        _run_cli("--out", str(out), "--annotations", str(src), "--videos", "8", "--seed", "2") == 0
    )
    source = load_annotations(src, "qvhighlights").by_qid()
    written = [r for s in ("train", "val", "test") for r in load_annotations(out / f"{s}.jsonl", "qvhighlights")]  # fmt: skip
    assert len({r.vid for r in written}) == 8
    first_vids = list(dict.fromkeys(r.vid for r in load_annotations(src, "qvhighlights")))[:8]
    assert {r.vid for r in written} == set(first_vids)
    for rec in written:
        real = source[rec.qid]
        assert (rec.vid, rec.query, rec.duration, rec.windows) == (real.vid, real.query, real.duration, real.windows)  # fmt: skip
        assert rec.relevant_clip_ids == real.relevant_clip_ids
        assert rec.saliency_scores == real.saliency_scores
        assert load_video_features(out / "video_features", rec.vid).shape == (4, 75, 64)


def test_copies_charades_annotations_with_one_second_clips(tmp_path: Path) -> None:
    src = shared_path("data", "charades_sta", "charades_test_release.jsonl")
    out = tmp_path / "cha"
    _run_cli("--out", str(out), "--annotations", str(src), "--annotations-dataset", "charades", "--videos", "5", "--clip-length", "1")  # fmt: skip
    assert json.loads((out / "synthetic.json").read_text())["dataset"] == "charades"
    rows = [json.loads(line) for s in ("train", "val", "test") for line in (out / f"{s}.jsonl").read_text().splitlines()]  # fmt: skip
    assert rows and all("saliency_scores" not in r for r in rows)
    for s in ("train", "val", "test"):
        for rec in load_annotations(out / f"{s}.jsonl", "charades", strict=True):
            T = load_video_features(out / "video_features", rec.vid).shape[1]
            assert int(np.ceil(rec.duration - 1e-6)) == T


def test_bad_settings_name_the_option() -> None:
    with pytest.raises(SynthError, match="--nouns"):
        generate(SynthConfig(nouns=1))
    with pytest.raises(SynthError, match="--val-fraction"):
        generate(SynthConfig(val_fraction=0.6, test_fraction=0.5))


def test_signal_is_real_and_needs_intermediate_layers() -> None:
    """An oracle that knows the concept code finds the GT clips among distractors; the last
    layer alone cannot tell same-noun siblings apart; the text alone names the concept."""
    bench = generate(SynthConfig(videos=70, seed=0))
    world = bench.world
    decoders = [np.linalg.pinv(m) for m in world.video_maps]  # (K, d, F_v)
    mid, last = 1, bench.cfg.layers - 1
    auc_mid, auc_last_sib, auc_mid_sib = [], [], []
    for i, video in enumerate(bench.videos):
        feats = bench.video_features(i).astype(np.float16).astype(np.float32)
        concepts = video.clip_concepts()
        for q in video.queries:
            gt = np.zeros(video.num_clips, dtype=bool)
            gt[q.relevant_clip_ids] = True
            code = world.concept_code(q.concept)
            score = {k: feats[k] @ decoders[k].T @ code for k in (mid, last)}
            distractor = (concepts >= 0) & ~gt
            sibling = np.array([c >= 0 and world.concept(int(c))[0] == world.concept(q.concept)[0] for c in concepts]) & ~gt  # fmt: skip
            if distractor.any():
                auc_mid.append(_auc(score[mid][gt], score[mid][distractor]))
            if sibling.any():
                auc_mid_sib.append(_auc(score[mid][gt], score[mid][sibling]))
                auc_last_sib.append(_auc(score[last][gt], score[last][sibling]))
    assert len(auc_mid_sib) >= 15
    assert np.mean(auc_mid) > 0.8  # chance is 0.5
    assert np.mean(auc_mid_sib) > 0.8
    assert np.mean(auc_last_sib) < 0.65  # the last layer blurs siblings together
    assert np.mean(auc_mid_sib) > np.mean(auc_last_sib) + 0.2

    # Query text alone: nearest concept centroid of mean-pooled tokens, fit on train only.
    def pooled(split: str) -> tuple[np.ndarray, np.ndarray]:
        qs = [q for i in bench.splits[split] for q in bench.videos[i].queries]
        x = np.stack([bench.text_features(q)[:, 1:].mean(1).ravel() for q in qs])
        return x, np.array([q.concept for q in qs])

    x_tr, y_tr = pooled("train")
    x_te, y_te = (np.concatenate(p) for p in zip(pooled("val"), pooled("test")))
    known = np.unique(y_tr)
    centroids = np.stack([x_tr[y_tr == c].mean(0) for c in known])
    pred = known[np.argmin(((x_te[:, None] - centroids[None]) ** 2).sum(-1), axis=1)]
    assert (pred == y_te).mean() > 0.8  # chance is 1/16


def test_sidetune_cli_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sidetune.cli import main

    assert main(["synth", "grounding", "--out", str(tmp_path / "s"), "--videos", "3"]) == 0
    assert (tmp_path / "s" / "train.jsonl").is_file()
    assert main(["synth", "grounding", "--out", str(tmp_path / "t"), "--nouns", "1"]) == 1
    assert "error: --nouns must be in 2..12" in capsys.readouterr().err

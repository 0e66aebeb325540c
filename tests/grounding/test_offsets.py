"""Weighted offsets of Fig. 4 / Fig. A: the hook, and ``sidetune offsets`` on a trained run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sidetune.cli import main
from sidetune.grounding.annotations import load_annotations
from sidetune.grounding.model import build_sdst, synthetic_config
from sidetune.grounding.offsets import OffsetRecorder, OffsetsError, summarize
from sidetune.grounding.rdsa import DeformableSampler
from tests.grounding.test_e2e import make_synthetic, tiny_overrides

FV, FT = 12, 10


def _batch(b: int = 2, k: int = 3, t: int = 10) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, 6:] = False
    return {
        "video_feats": torch.randn(b, k, t, FV, generator=g),
        "video_mask": mask,
        "text_feats": torch.randn(b, k, 4, FT, generator=g),
        "text_mask": torch.ones(b, 4, dtype=torch.bool),
    }


def _model(**overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = synthetic_config(FV, FT, hidden_dim=16, num_heads=4, num_queries=5, num_levels=3)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return build_sdst(cfg).eval()


@pytest.mark.parametrize("attention", ["rdsa", "deformable_ca"])
def test_untrained_offsets_are_the_head_initialisation(attention: str) -> None:
    """At init all points weigh 1/P, so d = mean of each head's initial offsets: heads 0, 1,
    2 at the left boundary (-1), the right boundary (+1) and the centre (0)."""
    model = _model(attention=attention)
    with OffsetRecorder(model) as rec, torch.no_grad():
        model(**_batch())
    d = rec.weighted_offsets()
    assert d.shape == (2, 3, 5, 4)  # (B, K, M, H)
    expected = torch.tensor([-1.0, 1.0, 0.0, -1.5])  # head 3: linspace(-1.5, 1.5, 1)
    torch.testing.assert_close(d, expected.expand_as(d), rtol=0, atol=1e-6)


@pytest.mark.parametrize(("attention", "shared"), [("rdsa", True), ("deformable_ca", False)])
def test_weighted_offsets_are_sum_of_weights_times_offsets(attention: str, shared: bool) -> None:
    model = _model(attention=attention, shared_levels=shared)
    samplers = [m for m in model.modules() if isinstance(m, DeformableSampler)]
    assert len(samplers) == (1 if shared else 3)
    with torch.no_grad():
        for s in samplers:
            s.offsets.weight.normal_(std=0.5)
            s.weights.weight.normal_(std=0.5)
    inputs: list[tuple[torch.Tensor, torch.Tensor]] = []
    handles = [
        s.register_forward_hook(lambda m, a, o: inputs.append((a[0], a[1]))) for s in samplers
    ]
    with OffsetRecorder(model) as rec, torch.no_grad():
        model(**_batch())
    for h in handles:
        h.remove()
    d = rec.weighted_offsets()
    assert len(inputs) == 3  # one call per level, in level order
    for level, (query, _refs) in enumerate(inputs):
        sampler = samplers[0] if shared else samplers[level]
        w = sampler.weights(query).view(2, 5, 4, -1).softmax(-1)
        off = sampler.offsets(query).view(2, 5, 4, -1)
        torch.testing.assert_close(d[:, level], (w * off).sum(-1))
    assert not torch.allclose(d[:, 0], d[:, 1])  # the levels differ once offsets are learned
    assert summarize(d.numpy()).shape == (3, 4)
    assert rec._handles == []  # hooks are removed on exit


def test_standard_ca_has_no_offsets() -> None:
    with pytest.raises(OffsetsError, match="standard_ca"):
        OffsetRecorder(_model(attention="standard_ca"))


@pytest.fixture(scope="module")
def trained_bf16_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny run trained with train.amp=bf16: the CPU autocast path runs through the trainer."""
    data = make_synthetic(tmp_path_factory.mktemp("synthetic"))
    run = tmp_path_factory.mktemp("run") / "run"
    assert main(["train", "sdst_synthetic", *tiny_overrides(data, run), "train.amp=bf16"]) == 0
    return data, run


def test_bf16_cpu_run_trains(trained_bf16_run: tuple[Path, Path]) -> None:
    _, run = trained_bf16_run
    logs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs if "loss" in r]
    assert losses and all(np.isfinite(losses))
    assert any("MR-full-mAP" in r for r in logs)


def test_offsets_command_writes_npz(
    trained_bf16_run: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, run = trained_bf16_run
    out = tmp_path / "offsets.npz"
    assert main(["offsets", "--run", str(run), "--split", "val", "--out", str(out), "--raw"]) == 0
    printed = capsys.readouterr().out
    assert "wrote offsets of" in printed and "level" in printed
    rows = load_annotations(data / "val.jsonl").records
    with np.load(out, allow_pickle=False) as z:
        d, qid = z["weighted_offsets"], z["qid"]
        assert d.shape == (len(rows), 2, 4, 2)  # (N, K=2, M=4, H=2) of tiny_overrides
        assert [str(r.qid) for r in rows] == qid.tolist()
        assert z["references"].shape == (len(rows), 2, 4, 2)
        assert z["scores"].shape == (len(rows), 4)
        np.testing.assert_allclose(d, (z["weights"] * z["offsets"]).sum(-1), atol=1e-5)
        assert str(z["attention"]) == "rdsa" and not bool(z["rdsa_use_latent"])
    # standard CA: a clear error, exit 1
    bad = main(
        [
            "offsets",
            "--run",
            str(run),
            "--out",
            str(tmp_path / "x.npz"),
            "model.attention=standard_ca",
        ]
    )
    assert bad == 1
    assert "no deformable video attention" in capsys.readouterr().err

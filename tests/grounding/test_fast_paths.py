"""SDST training step: the fast paths and the accelerator path give the plain path's numbers.

The accelerator path (no packing, batched torch Hungarian, padded spans from the collate) is
what runs on a GPU; here it runs on the CPU and must equal the default CPU path.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sidetune.grounding.data import collate_grounding
from sidetune.grounding.losses import LossConfig, SDSTCriterion
from sidetune.grounding.model import project_valid, sdst_synthetic
from sidetune.grounding.span_utils import pad_spans
from sidetune.nn.fast import plain_paths, sync_free_paths
from sidetune.nn.mlp import MLP

FV, FT = 12, 10


def _batch(b: int = 4, k: int = 2, t: int = 11, length: int = 6) -> dict[str, Any]:
    g = torch.Generator().manual_seed(2)
    video_mask = torch.ones(b, t, dtype=torch.bool)
    video_mask[1, 6:] = False
    video_mask[3, 8:] = False
    text_mask = torch.ones(b, length, dtype=torch.bool)
    text_mask[2, 3:] = False
    spans = [torch.tensor([[0.3, 0.2]]), torch.tensor([[0.5, 0.3], [0.2, 0.1]])]
    spans += [torch.tensor([[0.7, 0.2], [0.4, 0.1], [0.15, 0.1]]), torch.tensor([[0.5, 0.5]])]
    saliency = (torch.rand(b, t, generator=g) * 4).floor() * video_mask
    return {
        "video_feats": torch.randn(b, k, t, FV, generator=g),
        "video_mask": video_mask,
        "text_feats": torch.randn(b, k, length, FT, generator=g),
        "text_mask": text_mask,
        "targets": {"spans": spans, "saliency": saliency},
    }


def _step(
    model: torch.nn.Module, criterion: SDSTCriterion, batch: dict[str, Any], seed: int = 0
) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """Losses and parameter gradients of one training step from a fixed RNG state."""
    model.zero_grad()
    torch.manual_seed(seed)  # dropout, drop path, saliency anchors: the same draws
    inputs = [batch[k] for k in ("video_feats", "video_mask", "text_feats", "text_mask")]
    losses = criterion(model(*inputs), batch["targets"])
    losses["loss"].backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return {k: v.detach() for k, v in losses.items()}, grads


def _assert_same(a: Any, b: Any) -> None:
    (la, ga), (lb, gb) = a, b
    assert la.keys() == lb.keys()
    for key in la:
        torch.testing.assert_close(la[key], lb[key], rtol=1e-4, atol=1e-5, msg=key)
    assert len(ga) == len(gb)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-5)


@pytest.mark.usefixtures("onednn_everywhere")
@pytest.mark.parametrize("attention", ["rdsa", "deformable_ca", "standard_ca"])
def test_fast_paths_equal_plain_training_step(attention: str) -> None:
    torch.manual_seed(0)
    model = sdst_synthetic(FV, FT, attention=attention).train()
    criterion = SDSTCriterion(LossConfig())
    batch = _batch()
    with plain_paths():
        plain = _step(model, criterion, batch)
    fast = _step(model, criterion, batch)
    _assert_same(fast, plain)


def _accelerator_batch(batch: dict[str, Any]) -> dict[str, Any]:
    padded, mask = pad_spans(batch["targets"]["spans"])
    targets = {**batch["targets"], "spans_padded": padded, "spans_mask": mask}
    return {**batch, "targets": targets}


def test_accelerator_path_equals_cpu_path() -> None:
    """No packing + torch solver + collate-padded spans == packing + scipy + list spans."""
    torch.manual_seed(0)
    model = sdst_synthetic(FV, FT).eval()  # eval: packing changes how many dropout draws
    batch = _batch()
    cpu = _step(model, SDSTCriterion(LossConfig()), batch)
    with sync_free_paths():
        accel = _step(model, SDSTCriterion(LossConfig()), _accelerator_batch(batch))
    _assert_same(accel, cpu)


class _HostSyncs(TorchDispatchMode):
    """Records the operators that make a CUDA device wait for the host to read a value."""

    SYNCING = ("aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select")

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = func._schema.name
        if name in self.SYNCING or (name == "aten::index" and _bool_index(args)):
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


def _bool_index(args: Any) -> bool:
    indices = args[1] if len(args) > 1 else []
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


def test_accelerator_path_has_no_host_sync(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward, every loss, the matcher and backward queue without reading a device value."""
    torch.manual_seed(0)
    model = sdst_synthetic(FV, FT).train()
    criterion = SDSTCriterion(LossConfig())
    batch = _accelerator_batch(_batch())
    monkeypatch.setattr(torch.Tensor, "numpy", _no_numpy)
    with sync_free_paths(), _HostSyncs() as syncs:
        _step(model, criterion, batch)
    assert syncs.seen == []
    # the CPU path does sync (packing, scipy): the probe sees it
    monkeypatch.undo()
    with _HostSyncs() as syncs:
        _step(model, criterion, _batch())
    assert syncs.seen


def _no_numpy(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the accelerator path copied a tensor to the host (Tensor.numpy)")


def test_torch_and_scipy_matchers_agree_on_the_assignment() -> None:
    criterion = SDSTCriterion(LossConfig())
    g = torch.Generator().manual_seed(0)
    logits, spans = torch.randn(3, 4, 8, generator=g), torch.rand(3, 4, 8, 2, generator=g)
    gt, mask = pad_spans(_batch()["targets"]["spans"])
    a = replace(criterion.cfg, matcher_solver="scipy").build_matcher()
    b = replace(criterion.cfg, matcher_solver="torch").build_matcher()
    dense_a = a.match_dense(logits, spans, gt, mask)
    dense_b = b.match_dense(logits, spans, gt, mask)
    assert dense_a.shape == (3, 4, 3)
    assert torch.equal(dense_a, dense_b)
    assert torch.equal(dense_a >= 0, mask.expand(3, -1, -1))


def test_project_valid_pack_equals_mask() -> None:
    torch.manual_seed(0)
    mlp = MLP(FT, 8, 8, 2).eval()
    feats = torch.randn(3, 2, 5, FT)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    packed = project_valid(mlp, feats, mask, pack=True)
    masked = project_valid(mlp, feats, mask, pack=False)
    torch.testing.assert_close(packed, masked)
    assert (packed[1, :, 2:] == 0).all()


def test_collate_pads_spans_once() -> None:
    import numpy as np

    def sample(n: int, vid: str) -> dict[str, Any]:
        return {
            "video_feats": np.zeros((2, 4, 3), np.float16),
            "text_feats": np.zeros((2, 2, 5), np.float16),
            "spans": np.full((n, 2), 0.25, np.float32),
            "saliency": np.zeros(4, np.float32),
            "meta": {"qid": n, "vid": vid},
        }

    batch = collate_grounding([sample(1, "a"), sample(3, "b")])
    targets = batch["targets"]
    assert targets["spans_padded"].shape == (2, 3, 2)
    assert targets["spans_mask"].tolist() == [[True, False, False], [True, True, True]]
    torch.testing.assert_close(targets["spans_padded"][1], torch.full((3, 2), 0.25))


@pytest.mark.parametrize("train", [True, False])
def test_shared_text_layer_equals_repeated_text(train: bool) -> None:
    """A one-layer text sent once (B, 1, L, F) == the same layer repeated to K levels."""
    torch.manual_seed(0)
    model = sdst_synthetic(FV, FT, num_levels=3).train(train)
    # Unmatched terms only: on a fresh model near-tied matching costs may flip on 1e-7 noise.
    criterion = SDSTCriterion(LossConfig(disabled=["cls", "l1", "iou"]))
    batch = _batch(k=3)
    one = batch["text_feats"][:, :1]
    repeated = {**batch, "text_feats": one.expand(-1, 3, -1, -1).contiguous()}
    shared = {**batch, "text_feats": one}
    with plain_paths():
        plain = _step(model, criterion, repeated)
    fast = _step(model, criterion, shared)
    _assert_same(fast, plain)
    if not train:  # unpacked (accelerator) form; packing changes how many dropout draws
        with sync_free_paths():
            _assert_same(_step(model, criterion, shared), plain)


def test_shared_text_runs_the_wide_layer_once() -> None:
    mlp = MLP(FT, 8, 8, 2, dropout=0.5).train()
    seen = []
    mlp.layers[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    feats = torch.randn(3, 1, 5, FT)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1, 3:] = False
    out = project_valid(mlp, feats, mask, levels=4)
    assert out.shape == (3, 4, 5, 8)
    assert seen == [13]  # the valid tokens, once, not 4 x 13
    assert (out[1, :, 3:] == 0).all()
    assert not torch.equal(out[0, 0], out[0, 1])  # each level drew its own dropout mask


def test_collate_sends_a_shared_text_layer_once() -> None:
    import numpy as np

    def sample(shared: bool) -> dict[str, Any]:
        text = np.ones((1, 2, 5), np.float16)
        return {
            "video_feats": np.zeros((3, 4, 3), np.float16),
            "text_feats": np.broadcast_to(text, (3, 2, 5)) if shared else np.repeat(text, 3, 0),
            "spans": np.full((1, 2), 0.25, np.float32),
            "saliency": np.zeros(4, np.float32),
            "meta": {"qid": 0, "vid": "a"},
        }

    assert collate_grounding([sample(True), sample(True)])["text_feats"].shape == (2, 1, 2, 5)
    assert collate_grounding([sample(True), sample(False)])["text_feats"].shape == (2, 3, 2, 5)


def test_bf16_autocast_keeps_spans_and_sampling_in_float32() -> None:
    torch.manual_seed(0)
    model = sdst_synthetic(FV, FT).train()
    batch = _batch()
    inputs = [batch[k] for k in ("video_feats", "video_mask", "text_feats", "text_mask")]
    with torch.autocast("cpu", dtype=torch.bfloat16), sync_free_paths():
        out = model(*inputs)
        losses = SDSTCriterion(LossConfig())(out, batch["targets"])
    assert out["pred_spans"].dtype == torch.float32
    assert all(aux["pred_spans"].dtype == torch.float32 for aux in out["aux_outputs"])
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

"""Importing the authors' TDS-CLIP checkpoints: key layout, every tensor, logits.

The reference below is assembled by hand from the authors' ``clip/model.py`` (VisualTransformer,
Transformer, AttnCBlock, SAModule) and ``train_vision.py`` (VideoCLIP: ``fc`` after the side
network), in their own layouts: tokens ``(L, B T, C)``, maps ``(B, C, T, h, w)``, fused q/k/v.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from sidetune.cli import main
from sidetune.engine.checkpoint import load_weights
from sidetune.interop.tds_clip import (
    CheckpointImportError,
    convert_tds_checkpoint,
    import_tds_run,
    load_openai_clip_vision,
    read_state_dict,
)
from sidetune.recognition.recipe import build_model, load_recognition_config

W, LAYERS, P, IMG, D, C, T, N_LOCAL = (
    128,
    2,
    8,
    32,
    128,
    5,
    4,
    5,
)  # CLIP width 2 heads, side 2 heads
OVERRIDES = [f"model.side_dim={D}", f"model.num_classes={C}", f"data.num_segments={T}",
             "model.td_reduction=16", "model.side_heads=0"]  # fmt: skip


def authors_state_dict(seed: int = 0) -> dict[str, Tensor]:
    """Random tensors under the authors' names and shapes (BN statistics random too)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, scale: float = 0.1) -> Tensor:
        return torch.randn(*shape, generator=g) * scale

    sd: dict[str, Tensor] = {}

    def bn(name: str, c: int) -> None:
        sd.update({f"{name}.weight": 1 + r(c), f"{name}.bias": r(c), f"{name}.running_mean": r(c),
                   f"{name}.running_var": 0.5 + torch.rand(c, generator=g),
                   f"{name}.num_batches_tracked": torch.tensor(3)})  # fmt: skip

    grid = (IMG // P) ** 2
    sd["visual.conv1.weight"] = r(W, 3, P, P)
    sd["visual.class_embedding"] = r(W)
    sd["visual.positional_embedding"] = r(grid + 1, W)
    sd["visual.ln_pre.weight"], sd["visual.ln_pre.bias"] = 1 + r(W), r(W)
    for i in range(LAYERS):
        b = f"visual.transformer.resblocks.{i}."
        sd |= {b + "attn.in_proj_weight": r(3 * W, W), b + "attn.in_proj_bias": r(3 * W),
               b + "attn.out_proj.weight": r(W, W), b + "attn.out_proj.bias": r(W),
               b + "ln_1.weight": 1 + r(W), b + "ln_1.bias": r(W),
               b + "ln_2.weight": 1 + r(W), b + "ln_2.bias": r(W),
               b + "mlp.c_fc.weight": r(4 * W, W), b + "mlp.c_fc.bias": r(4 * W),
               b + "mlp.c_proj.weight": r(W, 4 * W), b + "mlp.c_proj.bias": r(W)}  # fmt: skip
        t = "visual.transformer."
        sd |= {f"{t}side_lns.{i}.weight": 1 + r(W), f"{t}side_lns.{i}.bias": r(W),
               f"{t}side_linears.{i}.weight": r(D, W), f"{t}side_linears.{i}.bias": r(D)}  # fmt: skip
        s = f"{t}side_transformer.{i}."
        bn(s + "bn_1", D)
        bn(s + "bn_2", D)
        bn(s + "mse.bn1", D // 16)
        bn(s + "mse.bn2", D)
        sd |= {s + "conv.0.weight": r(D, D, 1, 1, 1), s + "conv.0.bias": r(D),
               s + "conv.1.weight": r(D, 1, 3, 1, 1, scale=0.5), s + "conv.1.bias": r(D),
               s + "conv.2.weight": r(D, D, 1, 1, 1), s + "conv.2.bias": r(D),
               s + "mse.conv1.weight": r(D // 16, D, 1, 1), s + "mse.conv2.weight": r(D, D // 16, 1, 1),
               s + "attn.in_proj_weight": r(3 * D, D), s + "attn.in_proj_bias": r(3 * D),
               s + "attn.out_proj.weight": r(D, D), s + "attn.out_proj.bias": r(D),
               s + "ln_1.weight": 1 + r(D), s + "ln_1.bias": r(D),
               s + "mlp.fc1.weight": r(4 * D, D), s + "mlp.fc1.bias": r(4 * D),
               s + "mlp.fc2.weight": r(D, 4 * D), s + "mlp.fc2.bias": r(D)}  # fmt: skip
    sd["visual.transformer.side_spatial_position_embeddings"] = r(grid, D)
    sd["visual.side_conv1.weight"], sd["visual.side_conv1.bias"] = r(D, 3, 3, P, P), r(D)
    sd["visual.side_conv1_c5.weight"] = r(D, 3 * (N_LOCAL - 1), 3, P, P)
    sd["visual.side_conv1_c5.bias"] = r(D)
    bn("visual.side_pre_bn3d", D)
    bn("visual.side_pre_bn3d_c5", D)
    bn("visual.side_post_bn", D)
    sd["fc.weight"], sd["fc.bias"] = r(C, D), r(C)
    return sd


def _bn(x: Tensor, sd: dict[str, Tensor], name: str) -> Tensor:
    return F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"],
                        sd[f"{name}.weight"], sd[f"{name}.bias"], False, 0.0, 1e-5)  # fmt: skip


def _ln(x: Tensor, sd: dict[str, Tensor], name: str) -> Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"], 1e-5)


def _mha(q: Tensor, kv: Tensor, sd: dict[str, Tensor], name: str, heads: int) -> Tensor:
    out, _ = F.multi_head_attention_forward(
        q, kv, kv, q.shape[-1], heads, sd[f"{name}.in_proj_weight"], sd[f"{name}.in_proj_bias"],
        None, None, False, 0.0, sd[f"{name}.out_proj.weight"], sd[f"{name}.out_proj.bias"],
        training=False, need_weights=False,
    )  # fmt: skip
    return out


def reference_logits(sd: dict[str, Tensor], frames: Tensor) -> Tensor:
    """The authors' forward, eval mode. frames (B, T, 5, 3, H, W) -> logits (B, C)."""
    b, t = frames.shape[:2]
    x = frames.flatten(0, 1)  # (BT, 5, 3, H, W); the authors' (BT, 15, H, W) channel stack
    diffs = torch.cat([x[:, i + 1] - x[:, i] for i in range(4)], 1)  # x2-x1, ..., x5-x4
    to_map = lambda y: y.unflatten(0, (b, t)).transpose(1, 2)  # noqa: E731  (BT,C,H,W)->(B,C,T,H,W)
    conv = lambda y, n: F.conv3d(y, sd[f"{n}.weight"], sd[f"{n}.bias"], (1, P, P), (1, 1, 1))  # noqa: E731
    side = _bn(conv(to_map(x[:, 2]), "visual.side_conv1"), sd, "visual.side_pre_bn3d")
    side = side + 0.5 * _bn(
        conv(to_map(diffs), "visual.side_conv1_c5"), sd, "visual.side_pre_bn3d_c5"
    )
    h = side.shape[-1]
    side = side.permute(3, 4, 0, 2, 1).reshape(h * h, b * t, D)  # '(h w) (b t) d'
    z = F.conv2d(x[:, 2], sd["visual.conv1.weight"], stride=P).flatten(2).transpose(1, 2)
    z = torch.cat([sd["visual.class_embedding"].expand(b * t, 1, W), z], 1)
    z = _ln(z + sd["visual.positional_embedding"], sd, "visual.ln_pre").transpose(0, 1)
    for i in range(LAYERS):
        rb = f"visual.transformer.resblocks.{i}."
        y = _ln(z, sd, rb + "ln_1")
        z = z + _mha(y, y, sd, rb + "attn", W // 64)
        y = F.linear(_ln(z, sd, rb + "ln_2"), sd[rb + "mlp.c_fc.weight"], sd[rb + "mlp.c_fc.bias"])
        y = y * torch.sigmoid(1.702 * y)  # QuickGELU
        z = z + F.linear(y, sd[rb + "mlp.c_proj.weight"], sd[rb + "mlp.c_proj.bias"])
        tp = "visual.transformer."
        xs = F.linear(_ln(z, sd, f"{tp}side_lns.{i}"), sd[f"{tp}side_linears.{i}.weight"],
                      sd[f"{tp}side_linears.{i}.bias"])  # fmt: skip
        token, side = xs[:1], 0.5 * side + 0.5 * xs[1:]
        s = f"{tp}side_transformer.{i}."
        m = side.reshape(h, h, b, t, D).permute(2, 4, 3, 0, 1)  # 'b d t h w'
        y = _bn(m, sd, s + "bn_1")
        y = F.conv3d(y, sd[s + "conv.0.weight"], sd[s + "conv.0.bias"])
        y = F.conv3d(y, sd[s + "conv.1.weight"], sd[s + "conv.1.bias"], padding=(1, 0, 0), groups=D)
        y = F.conv3d(y, sd[s + "conv.2.weight"], sd[s + "conv.2.bias"])
        # SAModule (TD-Adapter)
        y2 = y.transpose(1, 2).flatten(0, 1)  # (BT, D, h, w)
        z0 = _bn(F.conv2d(y2, sd[s + "mse.conv1.weight"]), sd, s + "mse.bn1")
        z0 = z0.unflatten(0, (b, t)).transpose(1, 2)
        d = z0 - F.max_pool3d(z0, (3, 1, 1), 1, (1, 0, 0))
        g = (0.5 * d + 0.5 * d.mean(1, keepdim=True)).transpose(1, 2).flatten(0, 1)
        g = _bn(F.conv2d(g, sd[s + "mse.conv2.weight"]), sd, s + "mse.bn2")
        y2 = y2 + y2 * (torch.sigmoid(g) - 0.5)
        m = m + y2.unflatten(0, (b, t)).transpose(1, 2)
        side = m.permute(3, 4, 0, 2, 1).reshape(h * h, b * t, D)
        # CLS token shift over time, then attention with patch queries
        tok = token.reshape(1, b, t, D)
        shifted = torch.zeros_like(tok)
        shifted[:, :, :-1, : D // 2] = tok[:, :, 1:, : D // 2]
        shifted[:, :, 1:, D // 2 :] = tok[:, :, :-1, D // 2 :]
        xt = torch.cat(
            [
                shifted.reshape(1, b * t, D),
                side + sd[f"{tp}side_spatial_position_embeddings"][:, None],
            ]
        )
        xt = _ln(xt, sd, s + "ln_1")
        side = side + _mha(xt[1:], xt, sd, s + "attn", D // 64)
        m = _bn(side.reshape(h, h, b, t, D).permute(2, 4, 3, 0, 1), sd, s + "bn_2")
        y = F.gelu(F.linear(m.permute(3, 4, 0, 2, 1).reshape(h * h, b * t, D),
                            sd[s + "mlp.fc1.weight"], sd[s + "mlp.fc1.bias"]))  # fmt: skip
        side = side + F.linear(y, sd[s + "mlp.fc2.weight"], sd[s + "mlp.fc2.bias"])
    m = _bn(side.reshape(h, h, b, t, D).permute(2, 4, 3, 0, 1), sd, "visual.side_post_bn")
    return F.linear(m.flatten(2).mean(-1), sd["fc.weight"], sd["fc.bias"])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("authors") / "model_best.pt"
    torch.save({"epoch": 29, "model_state_dict": authors_state_dict(),
                "optimizer_state_dict": {"state": {}, "param_groups": []}}, path)  # fmt: skip
    return path


@pytest.mark.usefixtures("onednn_everywhere")
def test_imported_logits_equal_the_hand_assembled_reference(
    checkpoint: Path, tmp_path: Path
) -> None:
    run = import_tds_run(checkpoint, "tds_clip_synthetic", tmp_path / "run", OVERRIDES)
    cfg = load_recognition_config(run / "config.yaml")
    assert cfg.model.clip_checkpoint == str((run / "clip").resolve())
    model = build_model(cfg)
    load_weights(model, run / "checkpoints" / "best")
    model.eval()
    frames = torch.randn(2, T, N_LOCAL, 3, IMG, IMG, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = model(frames)
    ref = reference_logits(authors_state_dict(), frames)
    assert ref.abs().max() > 0.05  # not trivially zero
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    meta = json.loads((run / "checkpoints" / "best" / "meta.json").read_text())
    assert meta["epoch"] == 29 and meta["imported_from"].endswith("model_best.pt")


def test_every_tensor_is_mapped_once() -> None:
    sd = authors_state_dict()
    out = convert_tds_checkpoint(sd)
    assert len(out) == len(sd) + 2 * LAYERS * 2  # in_proj weight / bias -> q, k, v (3 for 1)
    assert out["blocks.1.temporal.pw1.weight"].shape == (D, D)  # 1x1x1 conv -> Linear
    assert out["blocks.0.temporal.dw_weight"].shape == (D, 3)
    k = sd["visual.transformer.resblocks.1.attn.in_proj_weight"].chunk(3)[1]
    assert torch.equal(out["clip.encoder.layers.1.self_attn.k_proj.weight"], k)


def test_leftover_or_missing_keys_fail_loudly(tmp_path: Path) -> None:
    sd = authors_state_dict()
    sd["visual.transformer.side_extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointImportError, match=r"1 tensors have no place.*side_extra"):
        convert_tds_checkpoint(sd)
    sd = authors_state_dict()
    del sd["visual.transformer.side_transformer.1.mse.conv2.weight"]
    with pytest.raises(CheckpointImportError, match=r"mse\.conv2\.weight"):
        convert_tds_checkpoint(sd)


def test_config_mismatch_names_the_field(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointImportError, match=r"model\.side_dim=128 \(config: 64\)"):
        import_tds_run(checkpoint, "tds_clip_synthetic", tmp_path / "r", OVERRIDES[1:])


def test_only_tensors_are_read(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model_state_dict": {"a": torch.zeros(1)}, "hook": Path("x")}, path)
    with pytest.raises(CheckpointImportError, match="weights_only"):
        read_state_dict(path)


def test_plain_openai_clip_as_frozen_backbone(tmp_path: Path) -> None:
    sd = {k: v for k, v in authors_state_dict().items() if k.startswith("visual.")
          and "side" not in k}  # fmt: skip
    sd |= {"visual.ln_post.weight": torch.full((W,), 2.0), "visual.ln_post.bias": torch.zeros(W),
           "visual.proj": torch.zeros(W, 16), "logit_scale": torch.tensor(4.6)}  # fmt: skip
    torch.save(sd, tmp_path / "ViT-tiny.pt")
    clip = load_openai_clip_vision(tmp_path / "ViT-tiny.pt")
    assert clip.config.hidden_size == W and clip.config.num_hidden_layers == LAYERS
    assert torch.equal(clip.post_layernorm.weight, sd["visual.ln_post.weight"])
    # as model.clip_checkpoint of a recognition config
    cfg = load_recognition_config(
        "tds_clip_synthetic",
        [f"model.clip_checkpoint={tmp_path / 'ViT-tiny.pt'}", "model.side_dim=32"],
    )
    model = build_model(cfg)
    assert torch.equal(model.clip.embeddings.class_embedding, sd["visual.class_embedding"])


def test_cli_import_then_evaluate_without_training_list(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sidetune.recognition.synthetic import generate

    data = tmp_path / "data"
    generate(data, train_per_class=1, val_per_class=1, frames=12, size=32, seed=0)
    (data / "test.txt").write_text("videos/val_00000.mp4 0\nvideos/val_00001.mp4 3\n")
    run = tmp_path / "imported"
    argv = ["import", "tds-clip", str(checkpoint)]
    opts = ["--config", "tds_clip_synthetic", "--out", str(run)]
    # the config's training list does not exist: evaluation must not need it
    extra = [*OVERRIDES, f"data.root={data}", "data.train=no_such_list.txt", "data.labels=null"]
    assert main([*argv, *extra, *opts]) == 0
    assert main([*argv, *extra, *opts]) == 1  # refuses to overwrite a run
    assert "already holds a run" in capsys.readouterr().err
    out = tmp_path / "metrics.json"
    evaluate = ["evaluate", "--run", str(run), "--out", str(out), "data.val=test.txt"]
    assert main([*evaluate, "eval.num_clips=2", "eval.protocol=k400"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["views"] == 2.0 and 0.0 <= metrics["top1"] <= 100.0

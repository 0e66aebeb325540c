"""Import the authors' TDS-CLIP checkpoints (github.com/BBYL9413/TDS-CLIP) and OpenAI CLIP ViTs.

The authors' ``train_vision.py`` saves ``{"epoch", "model_state_dict", "optimizer_state_dict"}``
where ``model_state_dict`` is their ``VideoCLIP``: the frozen CLIP vision tower in the OpenAI
layout (``visual.conv1``, ``visual.transformer.resblocks.i.attn.in_proj_weight``, ...), the side
network (``visual.side_*``, ``visual.transformer.side_*``) and the classifier ``fc.*``. Every
tensor maps onto one tensor of :class:`~sidetune.recognition.TDSCLIP`:

=====================================================  ==========================================
authors' key                                           ours
=====================================================  ==========================================
visual.conv1.weight                                    clip.embeddings.patch_embedding.weight
visual.class_embedding / positional_embedding          clip.embeddings.class_embedding / position_embedding.weight
visual.ln_pre.*                                        clip.pre_layrnorm.*
...resblocks.i.attn.in_proj_{weight,bias}              ...layers.i.self_attn.{q,k,v}_proj.* (split in 3)
...resblocks.i.attn.out_proj.* / ln_1 / ln_2           ...self_attn.out_proj.* / layer_norm1 / layer_norm2
...resblocks.i.mlp.c_fc / c_proj                       ...layers.i.mlp.fc1 / fc2
visual.side_conv1 / side_pre_bn3d                      sme.rgb_stem.conv / sme.rgb_stem.bn
visual.side_conv1_c5 / side_pre_bn3d_c5                sme.diff_stem.conv / sme.diff_stem.bn
visual.side_post_bn                                    head.norm
fc                                                     head.fc
visual.transformer.side_spatial_position_embeddings    pos_embed
visual.transformer.side_lns.k / side_linears.k         projections.k.norm / projections.k.linear
...side_transformer.k.bn_1 / bn_2                      blocks.k.temporal.norm / blocks.k.mlp.norm
...side_transformer.k.conv.0 / conv.2 (1x1x1 conv)     blocks.k.temporal.pw1 / pw2 (Linear, flattened)
...side_transformer.k.conv.1 (depthwise 3x1x1)         blocks.k.temporal.dw_weight / dw_bias
...side_transformer.k.mse.conv1 / bn1 / conv2 / bn2    blocks.k.temporal.td.squeeze / squeeze_bn / expand / expand_bn
...side_transformer.k.attn.in_proj_* / out_proj / ln_1 blocks.k.attention.qkv / out / norm
...side_transformer.k.mlp.fc1 / fc2                    blocks.k.mlp.fc1 / fc2
=====================================================  ==========================================

BatchNorm3d statistics map onto our token BatchNorms as they are (same per-channel statistics).
The authors' vision tower has no ``ln_post`` (TDS-CLIP never uses it); ours keeps its identity
initialisation. Any tensor left over on either side is an error. Files are read with
``torch.load(weights_only=True)`` (tensors and plain containers only); the OpenAI CLIP ``.pt``
releases are TorchScript archives, read by TorchScript's own loader, which restores tensors and
TorchScript code but never calls Python objects named in the file.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sidetune.errors import SidetuneError

CHECKPOINT_WRAPPERS = ("model_state_dict", "state_dict", "model")


class CheckpointImportError(SidetuneError):
    """A foreign checkpoint that cannot be read or does not map completely; names the file."""


# ---------------------------------------------------------------------------------------------
# reading


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def read_state_dict(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Tensors of a checkpoint file -> ``(state_dict, extras)``.

    Accepts a plain state dict, a training checkpoint wrapping it (``model_state_dict`` /
    ``state_dict`` / ``model``; the other non-tensor entries such as ``epoch`` come back in
    ``extras``), a ``.safetensors`` file, or an OpenAI CLIP TorchScript archive. DDP's
    ``module.`` prefixes are removed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointImportError(f"{path}: checkpoint file not found")
    extras: dict[str, Any] = {}
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path))
        elif _is_torchscript(path):
            obj = torch.jit.load(str(path), map_location="cpu").state_dict()
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointImportError(
            f"{path}: cannot read it as tensors only (weights_only): {exc}"
        ) from exc
    if isinstance(obj, Mapping):
        for key in CHECKPOINT_WRAPPERS:
            if isinstance(obj.get(key), Mapping):
                extras = {
                    k: v for k, v in obj.items() if isinstance(v, (int, float, str)) and k != key
                }
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointImportError(f"{path}: expected a state dict of tensors")
    sd = {re.sub(r"^(module\.)+", "", str(k)): v for k, v in obj.items()}
    return sd, extras


# ---------------------------------------------------------------------------------------------
# the frozen CLIP vision tower: OpenAI layout -> transformers CLIPVisionModel


def openai_vision_config(sd: Mapping[str, Tensor], prefix: str = "visual.") -> dict[str, Any]:
    """``CLIPVisionConfig`` fields of an OpenAI-layout ViT (as OpenAI's ``build_model`` infers)."""
    key = f"{prefix}conv1.weight"
    if key not in sd:
        raise CheckpointImportError(f"no {key}: not an OpenAI-layout CLIP ViT")
    width, _, patch, _ = sd[key].shape
    block = re.compile(re.escape(f"{prefix}transformer.resblocks.") + r"(\d+)\.")
    layers = len({m.group(1) for m in map(block.match, sd) if m})
    grid = round((sd[f"{prefix}positional_embedding"].shape[0] - 1) ** 0.5)
    return dict(
        hidden_size=int(width),
        intermediate_size=int(sd[f"{prefix}transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
        num_hidden_layers=layers,
        num_attention_heads=int(width) // 64,
        image_size=int(patch) * grid,
        patch_size=int(patch),
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )


def map_openai_vision(
    sd: Mapping[str, Tensor], prefix: str = "visual."
) -> tuple[dict[str, Tensor], set[str]]:
    """OpenAI vision-tower tensors -> ``CLIPVisionModel`` state-dict names; also the keys used."""
    out: dict[str, Tensor] = {}
    used: set[str] = set()

    def take(src: str, dst: str) -> None:
        out[dst] = sd[prefix + src]
        used.add(prefix + src)

    take("conv1.weight", "embeddings.patch_embedding.weight")
    take("class_embedding", "embeddings.class_embedding")
    take("positional_embedding", "embeddings.position_embedding.weight")
    for p in ("weight", "bias"):
        take(f"ln_pre.{p}", f"pre_layrnorm.{p}")
        if f"{prefix}ln_post.{p}" in sd:
            take(f"ln_post.{p}", f"post_layernorm.{p}")
    layers = openai_vision_config(sd, prefix)["num_hidden_layers"]
    for i in range(layers):
        src, dst = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        for p in ("weight", "bias"):
            qkv = sd[f"{prefix}{src}attn.in_proj_{p}"]
            used.add(f"{prefix}{src}attn.in_proj_{p}")
            for name, part in zip(("q", "k", "v"), qkv.chunk(3, dim=0)):
                out[f"{dst}self_attn.{name}_proj.{p}"] = part
            take(f"{src}attn.out_proj.{p}", f"{dst}self_attn.out_proj.{p}")
            take(f"{src}ln_1.{p}", f"{dst}layer_norm1.{p}")
            take(f"{src}ln_2.{p}", f"{dst}layer_norm2.{p}")
            take(f"{src}mlp.c_fc.{p}", f"{dst}mlp.fc1.{p}")
            take(f"{src}mlp.c_proj.{p}", f"{dst}mlp.fc2.{p}")
    return out, used


def load_openai_clip_vision(path: str | Path) -> Any:
    """A ``transformers.CLIPVisionModel`` holding the vision tower of an OpenAI CLIP ``.pt``.

    The text tower, ``logit_scale`` and the image projection ``visual.proj`` are not part of a
    vision tower and are skipped; every ``visual.*`` tensor but ``proj`` must map.
    """
    from transformers import CLIPVisionConfig, CLIPVisionModel

    sd, _ = read_state_dict(path)
    try:
        fields = openai_vision_config(sd)
        mapped, used = map_openai_vision(sd)
    except KeyError as exc:
        raise CheckpointImportError(f"{path}: missing tensor {exc}") from None
    except CheckpointImportError as exc:
        raise CheckpointImportError(f"{path}: {exc}") from None
    left = sorted(k for k in sd if k.startswith("visual.") and k not in used and k != "visual.proj")
    if left:
        raise CheckpointImportError(f"{path}: unmapped vision tensors {left[:5]}")
    vcfg = CLIPVisionConfig(**fields)
    vcfg._attn_implementation = "sdpa"
    model = CLIPVisionModel(vcfg)
    _copy_exact(model, mapped, str(path), optional={"post_layernorm.weight", "post_layernorm.bias"})
    return model


def _copy_exact(
    module: torch.nn.Module, tensors: Mapping[str, Tensor], where: str, optional: set[str]
) -> None:
    """Copy ``tensors`` into ``module``'s state; every state entry (but ``optional``) must be
    filled and every tensor must land, with the same shape."""
    target = module.state_dict()
    missing = sorted(set(target) - set(tensors) - optional)
    unexpected = sorted(set(tensors) - set(target))
    if missing or unexpected:
        raise CheckpointImportError(
            f"{where}: the checkpoint does not fit the model: our tensors without a source "
            f"{missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)}), "
            f"tensors left over {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''} "
            f"({len(unexpected)})"
        )
    with torch.no_grad():
        for name, value in tensors.items():
            dest = target[name]
            if dest.shape != value.shape:
                raise CheckpointImportError(
                    f"{where}: {name}: shape {tuple(value.shape)} in the checkpoint, "
                    f"{tuple(dest.shape)} in the model"
                )
            dest.copy_(value.to(dest.dtype))


# ---------------------------------------------------------------------------------------------
# the side network


_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def tds_model_fields(sd: Mapping[str, Tensor]) -> dict[str, Any]:
    """``model.*`` values the authors' checkpoint fixes: side width, classes, local frames."""
    try:
        side_dim = int(sd["visual.transformer.side_linears.0.weight"].shape[0])
        num_classes = int(sd["fc.weight"].shape[0])
        diff_in = int(sd["visual.side_conv1_c5.weight"].shape[1])
        td_hidden = int(sd["visual.transformer.side_transformer.0.mse.conv1.weight"].shape[0])
    except KeyError as exc:
        raise CheckpointImportError(
            f"missing tensor {exc}: not a TDS-CLIP checkpoint in the authors' layout"
        ) from None
    return {
        "side_dim": side_dim,
        "num_classes": num_classes,
        "num_local_frames": diff_in // 3 + 1,
        "td_reduction": side_dim // td_hidden,
    }


def map_tds_side(sd: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], set[str]]:
    """Side network + head tensors -> :class:`TDSCLIP` names; also the keys used."""
    out: dict[str, Tensor] = {}
    used: set[str] = set()

    def take(src: str, dst: str, fn: Any = None) -> None:
        value = sd[src]
        out[dst] = value if fn is None else fn(value)
        used.add(src)

    def bn(src: str, dst: str) -> None:
        for p in _BN:
            if f"{src}.{p}" in sd:
                take(f"{src}.{p}", f"{dst}.{p}")

    def pointwise(w: Tensor) -> Tensor:  # Conv3d/2d 1x1(x1) (O, I, 1, 1[, 1]) -> Linear (O, I)
        return w.reshape(w.shape[0], w.shape[1])

    for p in ("weight", "bias"):
        take(f"visual.side_conv1.{p}", f"sme.rgb_stem.conv.{p}")
        take(f"visual.side_conv1_c5.{p}", f"sme.diff_stem.conv.{p}")
        take(f"fc.{p}", f"head.fc.{p}")
    bn("visual.side_pre_bn3d", "sme.rgb_stem.bn")
    bn("visual.side_pre_bn3d_c5", "sme.diff_stem.bn")
    bn("visual.side_post_bn", "head.norm")
    take("visual.transformer.side_spatial_position_embeddings", "pos_embed")
    side = re.compile(r"visual\.transformer\.side_linears\.(\d+)\.")
    depth = len({m.group(1) for m in map(side.match, sd) if m})
    for k in range(depth):
        t = "visual.transformer."
        s, b = f"{t}side_transformer.{k}.", f"blocks.{k}."
        for p in ("weight", "bias"):
            take(f"{t}side_lns.{k}.{p}", f"projections.{k}.norm.{p}")
            take(f"{t}side_linears.{k}.{p}", f"projections.{k}.linear.{p}")
            take(f"{s}attn.out_proj.{p}", f"{b}attention.out.{p}")
            take(f"{s}ln_1.{p}", f"{b}attention.norm.{p}")
            take(f"{s}mlp.fc1.{p}", f"{b}mlp.fc1.{p}")
            take(f"{s}mlp.fc2.{p}", f"{b}mlp.fc2.{p}")
        take(f"{s}attn.in_proj_weight", f"{b}attention.qkv.weight")
        take(f"{s}attn.in_proj_bias", f"{b}attention.qkv.bias")
        bn(f"{s}bn_1", f"{b}temporal.norm")
        bn(f"{s}bn_2", f"{b}mlp.norm")
        take(f"{s}conv.0.weight", f"{b}temporal.pw1.weight", pointwise)
        take(f"{s}conv.0.bias", f"{b}temporal.pw1.bias")
        take(f"{s}conv.1.weight", f"{b}temporal.dw_weight", lambda w: w.reshape(w.shape[0], -1))
        take(f"{s}conv.1.bias", f"{b}temporal.dw_bias")
        take(f"{s}conv.2.weight", f"{b}temporal.pw2.weight", pointwise)
        take(f"{s}conv.2.bias", f"{b}temporal.pw2.bias")
        take(f"{s}mse.conv1.weight", f"{b}temporal.td.squeeze.weight", pointwise)
        take(f"{s}mse.conv2.weight", f"{b}temporal.td.expand.weight", pointwise)
        bn(f"{s}mse.bn1", f"{b}temporal.td.squeeze_bn")
        bn(f"{s}mse.bn2", f"{b}temporal.td.expand_bn")
    return out, used


def convert_tds_checkpoint(
    sd: Mapping[str, Tensor], where: str = "checkpoint"
) -> dict[str, Tensor]:
    """The authors' ``model_state_dict`` -> :class:`TDSCLIP` state-dict names (``clip.*`` too).

    Raises :class:`CheckpointImportError` naming the keys when anything is left unmapped.
    """
    try:
        clip, used_clip = map_openai_vision(sd)
        side, used_side = map_tds_side(sd)
    except KeyError as exc:
        raise CheckpointImportError(
            f"{where}: missing tensor {exc} (not a TDS-CLIP checkpoint in the authors' layout?)"
        ) from None
    left = sorted(set(sd) - used_clip - used_side)
    if left:
        raise CheckpointImportError(
            f"{where}: {len(left)} tensors have no place in our TDS-CLIP: {left[:8]}"
            f"{' ...' if len(left) > 8 else ''}"
        )
    return {**{f"clip.{k}": v for k, v in clip.items()}, **side}


def load_tds_state(model: torch.nn.Module, tensors: Mapping[str, Tensor], where: str) -> None:
    """Copy converted tensors into a built :class:`TDSCLIP`; every tensor of ours must be set
    (``clip.post_layernorm`` may stay as initialised: the authors' tower has no ``ln_post``)."""
    optional = {"clip.post_layernorm.weight", "clip.post_layernorm.bias"}
    _copy_exact(model, tensors, where, optional)


# ---------------------------------------------------------------------------------------------
# a run directory from an authors' checkpoint


def import_tds_run(
    checkpoint: str | Path,
    config: str | Path,
    out: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
) -> Path:
    """Write ``out`` as a sidetune run of ``config`` holding the authors' trained weights.

    ``out/clip/`` is the frozen CLIP tower of the checkpoint (a ``transformers`` directory,
    named by ``model.clip_checkpoint`` in ``out/config.yaml``), ``out/checkpoints/{best,last}``
    the side network, so ``sidetune evaluate --run out`` and ``load_recognition_model(out)`` use
    it directly. Returns ``out``.
    """
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from sidetune.config import save_config
    from sidetune.engine.checkpoint import save_checkpoint
    from sidetune.recognition.recipe import build_model, load_recognition_config

    path, out = Path(checkpoint), Path(out)
    if (out / "checkpoints").exists():
        raise CheckpointImportError(f"{out} already holds a run; choose another --out")
    sd, extras = read_state_dict(path)
    tensors = convert_tds_checkpoint(sd, str(path))
    fields = tds_model_fields(sd)
    clip_dir = (out / "clip").resolve()
    cfg = load_recognition_config(
        config, [*overrides, f"run_dir={out}", f"model.clip_checkpoint={clip_dir}"]
    )
    wrong = {k: v for k, v in fields.items() if getattr(cfg.model, k) != v}
    if wrong:
        raise CheckpointImportError(
            f"{path}: the checkpoint was trained with "
            + ", ".join(
                f"model.{k}={v} (config: {getattr(cfg.model, k)})" for k, v in wrong.items()
            )
            + "; pass these as key=value overrides or choose the matching --config"
        )
    vcfg = CLIPVisionConfig(**openai_vision_config(sd))
    clip = CLIPVisionModel(vcfg)
    clip_tensors = {k[len("clip.") :]: v for k, v in tensors.items() if k.startswith("clip.")}
    _copy_exact(clip, clip_tensors, str(path), {"post_layernorm.weight", "post_layernorm.bias"})
    tmp = clip_dir.with_name(clip_dir.name + ".tmp")
    clip.save_pretrained(str(tmp))
    if clip_dir.exists():
        import shutil

        shutil.rmtree(clip_dir)
    tmp.rename(clip_dir)
    model = build_model(cfg)
    load_tds_state(model, tensors, str(path))
    meta = {
        "epoch": int(extras.get("epoch", 0)),
        "step": 0,
        "metrics": {},
        "imported_from": str(path.resolve()),
        "source": "BBYL9413/TDS-CLIP train_vision.py checkpoint",
    }
    save_config(cfg, out / "config.yaml")
    for which in ("last", "best"):
        save_checkpoint(out / "checkpoints" / which, model, meta)
    return out

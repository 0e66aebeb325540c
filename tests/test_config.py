from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from sidetune.config import (
    ConfigError,
    config_task,
    load_config,
    parse_overrides,
    resolve_config_path,
    save_config,
)


@dataclass
class _Data:
    train: str | None = None
    layers: list[int] | None = None
    clip_length: float = 2.0


@dataclass
class _Model:
    hidden_dim: int = 256
    attention: Literal["rdsa", "deformable_ca", "standard_ca"] = "rdsa"
    use_cnn: bool = True


@dataclass
class _Cfg:
    task: str = "grounding"
    run_dir: str = "runs/x"
    data: _Data = field(default_factory=_Data)
    model: _Model = field(default_factory=_Model)


def test_parse_overrides_nests_and_parses_yaml_scalars() -> None:
    out = parse_overrides(["a.b=1", "a.c=2.5e-4", "d=[0,1]", "e=null", "f=text"])
    assert out == {"a": {"b": 1, "c": 2.5e-4}, "d": [0, 1], "e": None, "f": "text"}


def test_exponent_floats_from_yaml_text(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  clip_length: 1e-1\n")
    assert load_config(_Cfg, p).data.clip_length == 0.1
    assert load_config(_Cfg, None, ["data.clip_length=2.5e-4"]).data.clip_length == 2.5e-4
    with pytest.raises(ConfigError, match=r"data\.clip_length: expected a number"):
        load_config(_Cfg, None, ["data.clip_length=fast"])


def test_parse_overrides_rejects_missing_equals() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["model.hidden_dim"])


def test_yaml_then_overrides(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("task: grounding\nmodel:\n  hidden_dim: 128\ndata:\n  clip_length: 1\n")
    cfg = load_config(
        _Cfg, p, ["model.hidden_dim=64", "data.layers=[-2,-1]", "model.attention=standard_ca"]
    )
    assert cfg.model.hidden_dim == 64
    assert cfg.model.attention == "standard_ca"
    assert cfg.data.layers == [-2, -1]
    assert cfg.data.clip_length == 1.0 and isinstance(cfg.data.clip_length, float)
    assert cfg.model.use_cnn is True


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.hiden_dim=3", r"unknown config key\(s\) model.hiden_dim"),
        ("model.hidden_dim=abc", r"model.hidden_dim: expected an integer"),
        ("model.attention=foo", r"model.attention: 'foo' is not one of"),
        ("model.use_cnn=3", r"model.use_cnn: expected true/false"),
        ("data.layers=[a]", r"data.layers\[0\]: expected an integer"),
        ("model=3", r"model: expected a mapping"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(_Cfg, None, [override])


def test_save_and_reload_round_trip(tmp_path: Path) -> None:
    cfg = load_config(_Cfg, None, ["data.layers=[1,2]", "run_dir=out/r"])
    save_config(cfg, tmp_path / "saved.yaml")
    again = load_config(_Cfg, tmp_path / "saved.yaml")
    assert again == cfg


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "broken.yaml"
    p.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: invalid YAML"):
        load_config(_Cfg, p)


def test_builtin_config_resolution_and_task() -> None:
    found = sorted(Path(__file__).resolve().parents[1].glob("src/sidetune/configs/*/*.yaml"))
    if not found:
        with pytest.raises(ConfigError, match="neither a file nor a built-in"):
            resolve_config_path("no_such_config")
        return
    first = found[0]
    assert resolve_config_path(first.stem) == first
    assert resolve_config_path(f"configs/{first.parent.name}/{first.name}").samefile(first)
    assert config_task(first.stem) in {"grounding", "recognition"}
    with pytest.raises(ConfigError, match="neither a file nor a built-in"):
        resolve_config_path("no_such_config")


def test_only_bare_names_resolve_to_builtin_configs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path that does not exist is an error, even when a built-in has the same name."""
    found = sorted(Path(__file__).resolve().parents[1].glob("src/sidetune/configs/*/*.yaml"))
    name = found[0].stem
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path(name) == found[0]
    for path in (f"runs/{name}.yaml", f"{name}.yaml", f"./{name}", str(tmp_path / name)):
        with pytest.raises(ConfigError, match="does not exist") as err:
            resolve_config_path(path)
        assert path in str(err.value) and f"built-in config of that name is {name!r}" in str(
            err.value
        )
    (tmp_path / "mine.yaml").write_text("task: grounding\n")
    assert resolve_config_path("mine.yaml") == Path("mine.yaml")
    (tmp_path / "adir").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        resolve_config_path("adir/")

"""Configs: dataclass schemas <- YAML file <- ``key=value`` command-line overrides.

Each task declares its schema as nested dataclasses (see ``sidetune.grounding.config`` and
``sidetune.recognition.config``). A YAML file fills them, ``a.b.c=value`` overrides win over
the file, unknown keys and wrong types are errors that name the key, and the resolved config is
saved with every run so ``predict`` and ``--resume`` can rebuild exactly the same thing.

Override values are parsed as YAML scalars/lists: ``train.lr=2.5e-4``, ``data.layers=[0,1]``,
``model.attention=rdsa``, ``data.val=null``.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from sidetune.errors import SidetuneError
from sidetune.utils.io import atomic_open

T = TypeVar("T")

BUILTIN_CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(SidetuneError, ValueError):
    """A config file or override that does not fit the schema; the message names the key."""


def _is_bare_name(text: str) -> bool:
    """``sdst_synthetic`` is a name; ``./x``, ``dir/x``, ``x.yaml`` are paths."""
    return not any(sep in text for sep in ("/", "\\", os.sep)) and Path(text).suffix not in {
        ".yaml",
        ".yml",
    }


def resolve_config_path(name_or_path: str | Path) -> Path:
    """Find a config given a path, or a built-in name like ``sdst_synthetic``.

    Only a bare name (no directory part, no ``.yaml`` suffix) is looked up among the built-in
    configs; a path must exist, so a typo in a path never silently trains a preset of the
    same name. Built-in configs ship inside the package (``sidetune/configs/<task>/<name>.yaml``)
    so they work from an installed wheel as well as from the repository.
    """
    text = str(name_or_path)
    p = Path(name_or_path)
    known = sorted(q.stem for q in BUILTIN_CONFIG_DIR.glob("*/*.yaml"))
    if not _is_bare_name(text):
        if p.is_file():
            return p
        why = "is a directory, not a config file" if p.is_dir() else "does not exist"
        hint = f"; the built-in config of that name is {p.stem!r}" if p.stem in known else ""
        raise ConfigError(f"config file {text} {why}{hint}")
    matches = sorted(BUILTIN_CONFIG_DIR.glob(f"*/{text}.yaml"))
    if matches:
        return matches[0]
    if p.is_file():  # an extension-less file in the working directory
        return p
    raise ConfigError(
        f"config {text!r} is neither a file nor a built-in config; built-in: {', '.join(known)}"
    )


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict ``{"a": {"b": 1}, "c": "x"}``."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"override {item!r} conflicts with an earlier override of {part!r}"
                )
            node = child
        node[parts[-1]] = value
    return nested


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert the few safe cases (int->float, list->tuple)."""
    if tp is Any:
        return value
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: X's own message is the most precise one
            return _coerce(value, options[0], key)
        for arg in options:
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} does not match {tp}")
    if origin is typing.Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: {value!r} is not one of {list(allowed)}")
        return value
    if origin in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if _is_dataclass_type(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads exponent forms without a dot (`2.5e-4` is fine, `1e-4` is not) as text.
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            # YAML turns `model.name=123` into an int; a string field accepts it as text.
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and type mismatches raise ``ConfigError``."""
    if not _is_dataclass_type(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown config key(s) {', '.join(where + u for u in unknown)}; "
            f"valid keys{(' under ' + prefix) if prefix else ''}: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict/list structure suitable for YAML/JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_config(cls: type[T], path: str | Path | None, overrides: Sequence[str] = ()) -> T:
    """Schema defaults <- YAML file (optional) <- overrides, validated into ``cls``."""
    data: dict[str, Any] = {}
    if path is not None:
        data = load_yaml(resolve_config_path(path))
    data = merge(data, parse_overrides(overrides))
    return from_dict(cls, data)


def save_config(obj: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(to_dict(obj), fh, sort_keys=False)


def config_task(path: str | Path) -> str:
    """The ``task`` key of a config file (``grounding`` or ``recognition``)."""
    data = load_yaml(resolve_config_path(path))
    task = data.get("task")
    if task not in ("grounding", "recognition"):
        raise ConfigError(f"{path}: key 'task' must be 'grounding' or 'recognition', got {task!r}")
    return str(task)

"""Reading config values: typed sections from YAML mappings (unknown keys are errors naming them), and
`--set key=value` overrides. `hf_rrg.training.config` builds the `TrainingConfig` with them."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import yaml


class ConfigError(ValueError):
    """A training config that cannot be used; the message names the key and what to do."""


def plain_data(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: plain_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(item) for item in value]
    return value


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert a YAML value against a field annotation (numbers given as strings, e.g. `5e-5`, included)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where} must be a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        args = typing.get_args(annotation)
        item_type = args[0] if args else Any
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where} must have {len(args)} items, got {value!r}")
            return tuple(_coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, args)))
        items = [_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(annotation):
        return build_dataclass(annotation, value, where)
    return value


def build_dataclass(cls: type, data: Any, where: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the config'} must be a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in data if key not in names]
    if unknown:
        prefix = f"{where}." if where else ""
        raise ConfigError(
            f"unknown config key(s) {[prefix + str(k) for k in unknown]}; valid keys{' of ' + where if where else ''} "
            f"are {names}. Fix the spelling or remove the key."
        )
    kwargs = {
        key: _coerce(value, hints[key], f"{where}.{key}" if where else key) for key, value in data.items()
    }
    return cls(**kwargs)


def parse_section(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from a mapping with the same checks as the config itself (unknown keys name the valid
    ones, values are coerced to the field types); `where` names the section in errors (e.g. `recipe_options`)."""
    return build_dataclass(cls, data, where)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`"optimizer.lr_rest=1e-3"` -> (["optimizer", "lr_rest"], 0.001): the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not KEY=VALUE (e.g. --set training.epochs=5)")
    key, raw = text.split("=", 1)
    path = [part for part in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"override {text!r} has an empty key part; write e.g. training.epochs=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({error})") from None
    return path, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` overrides to a config mapping (a new mapping is returned)."""
    import copy

    data = copy.deepcopy(data)
    for text in overrides or []:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


__all__ = ["ConfigError", "apply_overrides", "build_dataclass", "parse_override", "parse_section", "plain_data"]

"""Configuration plumbing: YAML files, dotted `key=value` overrides, validation as UserErrors."""

from __future__ import annotations

import copy
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from sedsweep.errors import UserError, unknown_name
from sedsweep.fsio import unusable

M = TypeVar("M", bound=BaseModel)

SEED_MAX = 2**32 - 1  # seeds reach numpy's generators, which take [0, 2**32)

DEFAULT_WORKDIR = Path("sedsweep-runs")
"""Where corpora, the feature cache, the embedded MLflow store and Ray's results go by default."""


class Strict(BaseModel):
    """Base for config sections: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def parse_overrides(items: Sequence[str], option: str = "--set") -> dict[str, Any]:
    """Parse `key=value` strings (values read as YAML scalars: null = None) into a dict."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"expected key=value, got {item!r}", where=option)
        if not value.strip():
            out[key.strip()] = None
            continue
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


class UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.safe_load`'s loader (plain data only) that refuses a mapping giving a key twice:
    YAML requires keys to be unique, and PyYAML would keep the last one without a word (two
    `space:` blocks, the first silently ignored). A key a merge (`<<: *base`) brings in may be
    given again: that is how a merge is overridden."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else []:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"key {key!r} is given twice (lines {seen[key]} and {line})",
                    key_node.start_mark,
                )  # fmt: skip
            seen[key] = line
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file, bad syntax or a non-mapping is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(unusable(path, "YAML file"), where=path)
    if path.stat().st_size > MAX_YAML_BYTES:
        raise UserError(f"larger than {MAX_YAML_BYTES // 1024} KiB: not a config file", where=path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # plain data
    except RecursionError:
        raise UserError("nested too deeply: not a config file", where=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path} line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise UserError(f"malformed YAML: {problem}", where=where) from None
    except UnicodeDecodeError:
        raise UserError("not a UTF-8 text file", where=path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError("expected a mapping of keys to values at the top level", where=path)
    if _expands_beyond(data, MAX_YAML_VALUES):
        raise UserError(
            f"its aliases expand to more than {MAX_YAML_VALUES:,} values: refusing it", where=path
        )
    return data


MAX_YAML_BYTES = 1 << 20
MAX_YAML_VALUES = 100_000  # a search-space file has hundreds; a "billion laughs" has 10^9


def _expands_beyond(data: Any, limit: int) -> bool:
    """Whether `data`, with every alias (a shared reference) counted each time it is used,
    holds more than `limit` values; stops counting at the limit."""
    stack, seen = [data], 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            return True
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts, creating the intermediate levels."""
    parts = key.split(".")
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge `override` into a copy of `base` (mappings merge, other values replace)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def with_overrides(base: Mapping[str, Any], dotted: Mapping[str, Any]) -> dict[str, Any]:
    """Apply dotted-key overrides (`mmm.w_max: 0.5`; `staged.stages.1: 500` indexes a list)."""
    out = copy.deepcopy(dict(base))
    for key, value in dotted.items():
        head, _, index = key.rpartition(".")
        target = _lookup(out, head) if head else None
        if isinstance(target, list) and index.isdigit() and int(index) < len(target):
            target[int(index)] = value
            continue
        nested: dict[str, Any] = {}
        set_dotted(nested, key, value)
        out = deep_merge(out, nested)
    return out


def _lookup(data: Any, dotted: str) -> Any:
    """The value at a dotted path of nested dicts, or None when the path does not exist."""
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping to dotted keys (lists and scalars are leaves)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def validate(model: type[M], data: Mapping[str, Any], where: str) -> M:
    """Validate `data` against a pydantic model; the first problem becomes a one-line UserError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # a misspelt key is also a missing one: name the unknown key, which says both
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        parts, parent = _walk(model, err["loc"][:-1])
        key = ".".join([*parts, str(err["loc"][-1])] if err["loc"] else parts) or "(root)"
        if err["type"] == "extra_forbidden":
            if parent is None:
                raise UserError(f"unknown key {key!r}", where=where) from None
            prefix = "".join(f"{p}." for p in parts)
            message = unknown_name("key", key, parent.model_fields, prefix=prefix)
            raise UserError(message, where=where) from None
        if err["type"] == "literal_error":  # one of a fixed set of names
            known = re.findall(r"'([^']*)'", err["ctx"]["expected"])
            message = unknown_name("value", err["input"], known)
            raise UserError(f"key {key!r}: {message}", where=where) from None
        raise UserError(f"key {key!r}: {err['msg']}", where=where) from None


_UNIONS = (typing.Union, types.UnionType)


def _walk(model: type[BaseModel], loc: Sequence[Any]) -> tuple[list[str], type[BaseModel] | None]:
    """Follow a validation error's location `loc` from `model` through nested models, optional
    ones, dicts, lists and unions: the location as the user wrote it (without the names
    pydantic gives a union's members or tags), and the model that validates the value there
    (None when the path leads to something else)."""
    parts: list[str] = []
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        members = typing.get_args(current) if typing.get_origin(current) in _UNIONS else ()
        if chosen := [m for m in members if _names_member(m, part)]:
            current = chosen[0]  # pydantic names the union member (or tag) it tried
            continue
        parts.append(str(part))
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field is not None else None
        elif typing.get_origin(current) in (dict, list, Mapping, Sequence):
            current = typing.get_args(current)[-1]  # the value (or item) type
        else:
            current = None
    current = _unwrap(current)
    found = isinstance(current, type) and issubclass(current, BaseModel)
    return parts, current if found else None


def _names_member(member: Any, part: Any) -> bool:
    """True when `part` of an error location names this union member: its class name, or the
    value of one of its Literal fields (a discriminated union's tag)."""
    if getattr(member, "__name__", None) == part:
        return True
    fields = (
        member.model_fields.values()
        if isinstance(member, type) and issubclass(member, BaseModel)
        else ()
    )
    return any(
        typing.get_origin(f.annotation) is typing.Literal and part in typing.get_args(f.annotation)
        for f in fields
    )


def _unwrap(annotation: Any) -> Any:
    """`X` for `X | None` and `Annotated[X, ...]`; anything else as it is."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in _UNIONS:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else annotation
    return annotation

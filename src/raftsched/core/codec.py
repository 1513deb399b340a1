"""Commands and state to bytes and back.

Frozen dataclasses are encoded field by field into JSON-friendly values, with
fields that hold their default value left out, so a field added later (with a
default) reads old journals and snapshots unchanged. Supported field types:
str, int, float, bool, None-able, StrEnum, nested dataclasses, tuples of those
and tuples of tuples.

A log entry is a JSON list of commands, each `[tag, {fields}]`. Command tags are
registered with `@command(tag)` and are append-only: never renumber or reuse
one. Reserved ranges keep parallel work from colliding:
  1-19 core cluster and failure handling, 20-39 job semantics (retries, DLQ,
  keys), 40-59 templates/schedules/workflows, 60-79 observability,
  80-99 access control, 110-119 node operations (drain, eligibility),
  120-129 cluster membership (core/members.py: add, remove a member),
  130-139 runtime changes (node update, cluster settings).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

STATE_VERSION = 1

Enc = Callable[[Any], Any]
Dec = Callable[[Any], Any]


class CodecError(ValueError):
    pass


_MISSING = dataclasses.MISSING
_plans: dict[type, tuple[list[tuple[str, Any, Enc]], dict[str, Dec]]] = {}


def _identity(v: Any) -> Any:
    return v


def _converters(tp: Any) -> tuple[Enc, Dec]:
    """Encoder and decoder for one annotated type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            enc1, dec1 = _converters(args[0])
            return (lambda v: None if v is None else enc1(v)), (lambda w: None if w is None else dec1(w))
        return _identity, _identity  # unions of plain JSON types
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            enc1, dec1 = _converters(args[0])
            if enc1 is _identity and dec1 is _identity:
                return list, tuple
            return (lambda v: [enc1(x) for x in v]), (lambda w: tuple(dec1(x) for x in w))
        convs = [_converters(a) for a in args]
        return (
            lambda v: [c[0](x) for c, x in zip(convs, v, strict=True)],
            lambda w: tuple(c[1](x) for c, x in zip(convs, w, strict=True)),
        )
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return (lambda v: to_wire(v)), (lambda w, _tp=tp: from_wire(_tp, w))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return (lambda v: v.value), (lambda w, _tp=tp: _tp(w))
    if tp is float:
        return _identity, float
    return _identity, _identity


def _plan(cls: type) -> tuple[list[tuple[str, Any, Enc]], dict[str, Dec]]:
    plan = _plans.get(cls)
    if plan is None:
        hints = typing.get_type_hints(cls)
        encs: list[tuple[str, Any, Enc]] = []
        decs: dict[str, Dec] = {}
        for f in dataclasses.fields(cls):
            enc, dec = _converters(hints[f.name])
            default = f.default
            if default is _MISSING and f.default_factory is not _MISSING:
                default = f.default_factory()
            encs.append((f.name, default, enc))
            decs[f.name] = dec
        plan = _plans[cls] = (encs, decs)
    return plan


_custom: dict[type, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {}


def custom(cls: type, enc: Callable[[Any], Any], dec: Callable[[Any], Any]) -> None:
    """Give a class its own wire form (e.g. to share repeated values in a batch)."""
    _custom[cls] = (enc, dec)


def to_wire(obj: Any) -> dict[str, Any]:
    c = _custom.get(type(obj))
    if c is not None:
        return c[0](obj)  # type: ignore[no-any-return]
    encs, _ = _plan(type(obj))
    out = {}
    for name, default, enc in encs:
        v = getattr(obj, name)
        if default is not _MISSING and v == default:
            continue
        out[name] = enc(v)
    return out


def from_wire(cls: type[T], w: dict[str, Any]) -> T:
    c = _custom.get(cls)
    if c is not None:
        return c[1](w)  # type: ignore[no-any-return]
    _, decs = _plan(cls)
    try:
        return cls(**{k: decs[k](v) for k, v in w.items()})
    except KeyError as e:
        raise CodecError(f"{cls.__name__}: unknown field {e}") from None


# ---- commands ---------------------------------------------------------------------

_by_tag: dict[int, type] = {}
_tag_of: dict[type, int] = {}


def command(tag: int) -> Callable[[type[T]], type[T]]:
    """Register a command class under an append-only tag."""

    def deco(cls: type[T]) -> type[T]:
        if tag in _by_tag and _by_tag[tag] is not cls:
            raise CodecError(f"command tag {tag} already used by {_by_tag[tag].__name__}")
        _by_tag[tag] = cls
        _tag_of[cls] = tag
        return cls

    return deco


def command_to_wire(c: Any) -> list[Any]:
    tag = _tag_of.get(type(c))
    if tag is None:
        raise CodecError(f"unregistered command type {type(c).__name__}")
    return [tag, to_wire(c)]


def command_from_wire(w: list[Any]) -> Any:
    cls = _by_tag.get(w[0])
    if cls is None:
        raise CodecError(f"unknown command tag {w[0]!r}")
    return from_wire(cls, w[1])


def encode_entry(cmds: list[Any]) -> bytes:
    """One Raft log entry: a group of commands applied in order."""
    return json.dumps([command_to_wire(c) for c in cmds], separators=(",", ":")).encode()


def decode_entry(blob: bytes) -> list[Any]:
    return [command_from_wire(w) for w in json.loads(blob)]

"""Writes ``schemas/frames.py``: msgspec structs generated from the contract's bulk model, for the controller's ingest.

The pydantic models stay the contract (one source of truth); a frame is the same message decoded by msgspec in
C, about five times cheaper per telemetry sample (BENCHMARKS.md, issue 15). The generator reads each model's
fields and constraints and writes the struct that accepts the same payloads with the same values; what msgspec
cannot check as pydantic does is checked in the generated ``__post_init__``:

- string patterns: msgspec would run Python's ``re`` per string (slower than pydantic's whole decode); the frame
  checks each value once per process against a bounded set of values already matched, with pydantic's
  end-of-text ``$`` (:class:`schemas.patterns.Pattern`);
- ``AfterValidator`` functions of a field (the storable-instant range) are called on the decoded value;
- integer bounds beyond 64 bits (``lt=2**63``) become the equal ``le=2**63 - 1``.

A model feature the generator does not know (another validator, a union, deeper nesting) makes it fail: the frame
never silently accepts what the model refuses. ``python -m schemas.export`` rewrites the file; ``--check`` (in
``make lint``) fails when it drifts from the models.
"""

import enum
import json
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin

import annotated_types
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from schemas.telemetry import Telemetry

FRAMES_FILE: Final = Path(__file__).with_name("frames.py")

ROOTS: Final[tuple[type[BaseModel], ...]] = (Telemetry,)
"""Models decoded as frames: telemetry, the bulk of what the controller ingests."""

_KNOWN_FIELD_VALIDATORS: Final = {"_known_version"}
"""Field validators whose check the frame makes another way (the version: a ``Literal`` in both)."""


class FrameError(Exception):
    """The model uses something the generator cannot translate faithfully."""


def render() -> str:
    """The text of ``schemas/frames.py`` for the current models."""
    gen = _Generator()
    for root in ROOTS:
        gen.struct(root, root=True)
    return gen.text()


class _Generator:
    def __init__(self) -> None:
        self.imports: dict[str, set[str]] = {}
        self.patterns: dict[str, str] = {}
        """Module-level pattern constant name -> pattern."""
        self.blocks: list[str] = []
        self.done: set[type[BaseModel]] = set()

    def need(self, module: str, name: str) -> None:
        self.imports.setdefault(module, set()).add(name)

    def struct(self, model: type[BaseModel], *, root: bool = False) -> str:
        name = f"{model.__name__}Frame"
        if model in self.done:
            return name
        self.done.add(model)
        _check_model(model)
        max_str = model.model_config.get("str_max_length")
        lines: list[str] = []
        checks: list[str] = []
        for field_name, info in model.model_fields.items():
            annotation, field_checks = self.field(model, field_name, info, max_str, root=root)
            default = "" if info.is_required() else f" = {_literal(info.default)}"
            lines.append(f"    {field_name}: {annotation}{default}")
            checks += field_checks
        doc = (model.__doc__ or "").strip().splitlines()[0].rstrip(".")
        body = [
            f"class {name}(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, gc=False):",
            f'    """{doc}: frame of :class:`{model.__module__}.{model.__name__}`."""',
            "",
            *lines,
        ]
        if checks:
            body += ["", "    def __post_init__(self) -> None:", *checks]
        self.blocks.append("\n".join(body))
        return name

    def field(
        self, model: type[BaseModel], field_name: str, info: FieldInfo, max_str: int | None, *, root: bool
    ) -> tuple[str, list[str]]:
        annotation = info.annotation
        meta, pattern, after = _constraints(model, field_name, info)
        checks: list[str] = []
        if after:
            for func in after:
                self.need(func.__module__, func.__name__)
                checks.append(f"        {func.__name__}(self.{field_name})")
        if get_origin(annotation) is Literal:
            return f"Literal[{', '.join(repr(a) for a in get_args(annotation))}]", checks
        if get_origin(annotation) is list:
            return self.items(model, field_name, annotation, meta, checks, root=root)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if meta or any(
                _constraints(annotation, n, i)[1:] != (None, []) for n, i in annotation.model_fields.items()
            ):
                raise FrameError(f"{model.__name__}.{field_name}: checks in or on a nested model are not translated")
            return self.struct(annotation), checks
        text, more = self.scalar(model, field_name, annotation, meta, pattern, max_str, root=root)
        return text, checks + more

    def scalar(
        self,
        model: type[BaseModel],
        field_name: str,
        annotation: Any,
        meta: dict[str, Any],
        pattern: str | None,
        max_str: int | None,
        *,
        root: bool,
    ) -> tuple[str, list[str]]:
        checks: list[str] = []
        if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
            self.need(annotation.__module__, annotation.__name__)
            return annotation.__name__, checks
        if annotation is AwareDatetime:
            self.need("datetime", "datetime")
            return _annotated("datetime", {"tz": True, **meta}), checks
        if annotation is str:
            if max_str is not None and "max_length" not in meta:
                meta["max_length"] = max_str
            if pattern is not None and root:  # below the root, the root's loop checks it
                const = self.pattern(pattern)
                checks += [
                    f"        if self.{field_name} not in {const}.matched:",
                    f"            {const}.check(self.{field_name})",
                ]
            return _annotated("str", meta), checks
        if annotation in (int, float, bool) and pattern is None:
            return _annotated(getattr(annotation, "__name__", ""), meta), checks
        raise FrameError(f"{model.__name__}.{field_name}: type {annotation!r} is not translated")

    def items(
        self,
        model: type[BaseModel],
        field_name: str,
        annotation: Any,
        meta: dict[str, Any],
        checks: list[str],
        *,
        root: bool,
    ) -> tuple[str, list[str]]:
        (item,) = get_args(annotation)
        if not (isinstance(item, type) and issubclass(item, BaseModel)):
            raise FrameError(f"{model.__name__}.{field_name}: only lists of models are translated")
        item_name = self.struct(item)
        for sub_name, sub_info in item.model_fields.items():
            _, sub_pattern, sub_after = _constraints(item, sub_name, sub_info)
            if sub_after or (sub_pattern is not None and not root):
                raise FrameError(f"{item.__name__}.{sub_name}: checks below one level are not translated")
            if sub_pattern is not None:
                const = self.pattern(sub_pattern)
                checks += [
                    f"        matched = {const}.matched",
                    f"        for item in self.{field_name}:",
                    f"            if item.{sub_name} not in matched:",
                    f"                {const}.check(item.{sub_name})",
                ]
        return _annotated(f"list[{item_name}]", meta), checks

    def pattern(self, pattern: str) -> str:
        for const, known in self.patterns.items():
            if known == pattern:
                return const
        const = f"_PATTERN_{len(self.patterns) + 1}"
        self.patterns[const] = pattern
        self.need("schemas.patterns", "Pattern")
        return const

    def text(self) -> str:
        head = [
            '"""Generated by ``python -m schemas.export`` from the models (see ``schemas/framegen.py``): do not edit.',
            "",
            "msgspec structs decoding the same payloads as the contract's models, with the same values; the",
            "controller's ingest decodes telemetry with them (``schemas.codec.decode_frame``).",
            '"""',
            "",
        ]
        stdlib = sorted(m for m in self.imports if m in ("datetime", "enum", "typing"))
        local = sorted(m for m in self.imports if m not in stdlib)
        imports = [f"from {m} import {', '.join(sorted(self.imports[m]))}" for m in stdlib]
        imports.append("from typing import Annotated, Literal")
        imports += ["", "import msgspec", ""]
        imports += [f"from {m} import {', '.join(sorted(self.imports[m]))}" for m in local]
        consts = [f"{c} = Pattern({_literal(p)})" for c, p in self.patterns.items()]
        return "\n".join([*head, *imports, "", *consts, "", "", "\n\n\n".join(self.blocks), ""])


def _check_model(model: type[BaseModel]) -> None:
    config = model.model_config
    if config.get("extra") != "forbid" or not config.get("frozen"):
        raise FrameError(f"{model.__name__}: only frozen models refusing extra fields are translated")
    decorators = model.__pydantic_decorators__
    unknown = set(decorators.field_validators) - _KNOWN_FIELD_VALIDATORS
    if unknown or decorators.model_validators or decorators.root_validators:
        raise FrameError(f"{model.__name__}: validators {sorted(unknown)} are not translated")
    versioned = "_known_version" in decorators.field_validators
    if versioned and get_origin(model.model_fields["schema_version"].annotation) is not Literal:
        raise FrameError(f"{model.__name__}: the version check needs a Literal schema_version")


def _constraints(
    model: type[BaseModel], field_name: str, info: FieldInfo
) -> tuple[dict[str, Any], str | None, list[Any]]:
    """msgspec ``Meta`` arguments, a pattern and ``AfterValidator`` functions of one field."""
    meta: dict[str, Any] = {}
    pattern: str | None = None
    after: list[Any] = []
    for item in info.metadata:
        kind = type(item).__name__
        bound = _BOUNDS.get(type(item))
        if bound is not None:
            value = getattr(item, bound)
            if bound == "lt" and info.annotation is int and isinstance(value, int):
                meta["le"] = value - 1  # msgspec refuses int bounds beyond 64 bits; equal for integers
            else:
                meta[bound] = value
        elif kind == "StringConstraints":
            rest = {k: v for k, v in vars(item).items() if v is not None and k not in ("pattern", "max_length")}
            if rest:
                raise FrameError(f"{model.__name__}.{field_name}: string constraints {rest} are not translated")
            pattern = item.pattern
            if item.max_length is not None:
                meta["max_length"] = item.max_length
        elif kind == "AfterValidator":
            after.append(item.func)
        else:
            raise FrameError(f"{model.__name__}.{field_name}: constraint {item!r} is not translated")
    return meta, pattern, after


_BOUNDS: Final[dict[type, str]] = {
    annotated_types.Ge: "ge",
    annotated_types.Gt: "gt",
    annotated_types.Le: "le",
    annotated_types.Lt: "lt",
    annotated_types.MaxLen: "max_length",
    annotated_types.MinLen: "min_length",
}
"""Constraint classes with a msgspec ``Meta`` argument of the same meaning, by their attribute name."""


def _annotated(base: str, meta: dict[str, Any]) -> str:
    if not meta:
        return base
    args = ", ".join(f"{k}={_literal(v)}" for k, v in meta.items())
    return f"Annotated[{base}, msgspec.Meta({args})]"


def _literal(value: object) -> str:
    if value is PydanticUndefined or isinstance(value, (datetime, enum.Enum, BaseModel)):
        raise FrameError(f"default {value!r} is not translated")
    return json.dumps(value) if isinstance(value, str) else repr(value)  # a double-quoted Python string

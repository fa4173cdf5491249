"""Semantic versions (semver 2.0.0 precedence) as a comparable value that travels as a plain string.

Build metadata (``+…``) and leading zeros are refused, so every version has exactly one spelling: equal versions
have equal strings, which keeps signed manifests canonical.
"""

import re
from dataclasses import dataclass
from functools import total_ordering
from typing import Any, Final, Self

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

_NUM: Final = r"(?:0|[1-9][0-9]{0,8})"
_PRE_ID: Final = r"(?:0|[1-9][0-9]{0,8}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
SEMVER_PATTERN: Final = rf"^{_NUM}\.{_NUM}\.{_NUM}(?:-{_PRE_ID}(?:\.{_PRE_ID})*)?$"
_SEMVER = re.compile(SEMVER_PATTERN)


@total_ordering
@dataclass(frozen=True, slots=True, eq=True)
class SemVer:
    """``MAJOR.MINOR.PATCH[-PRERELEASE]``, ordered by semver precedence (``1.0.0-rc.1 < 1.0.0 < 1.0.1``)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse ``text``; raise ``ValueError`` naming the rule it breaks."""
        if len(text) > 64 or not _SEMVER.fullmatch(text):
            raise ValueError(
                f"{text!r} is not a semantic version: use MAJOR.MINOR.PATCH with an optional -PRERELEASE "
                "(e.g. 1.4.2 or 2.0.0-rc.1), no leading zeros, no +build"
            )
        core, _, pre = text.partition("-")
        major, minor, patch = (int(part) for part in core.split("."))
        return cls(major, minor, patch, tuple(pre.split(".")) if pre else ())

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(self.prerelease)}" if self.prerelease else core

    def _key(self) -> tuple[int, int, int, tuple[Any, ...]]:
        # A release sorts after all of its pre-releases; numeric identifiers sort before alphanumeric ones.
        pre: tuple[Any, ...] = (
            (0, tuple((0, int(i), "") if i.isdigit() else (1, 0, i) for i in self.prerelease))
            if self.prerelease
            else (1,)
        )
        return (self.major, self.minor, self.patch, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() < other._key()

    @classmethod
    def __get_pydantic_core_schema__(cls, source: type[Any], handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        from_str = core_schema.no_info_after_validator_function(cls.parse, core_schema.str_schema())
        return core_schema.json_or_python_schema(
            json_schema=from_str,
            python_schema=core_schema.union_schema([core_schema.is_instance_schema(cls), from_str]),
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "pattern": SEMVER_PATTERN, "maxLength": 64, "examples": ["1.4.2", "2.0.0-rc.1"]}

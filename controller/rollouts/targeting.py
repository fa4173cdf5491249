"""Which nodes a rollout updates: a filter over a fleet snapshot, and the order they are taken in.

Targets are ordered round-robin over sites (sites and node ids sorted), so the canary and every early wave spread over
as many sites as they can instead of taking one site's nodes first.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import zip_longest
from typing import Final, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.semver import SemVer


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """One node of the fleet snapshot, as the rollout engine needs it."""

    node_id: str
    site: str
    hardware_model: str
    version: str
    """The release the node runs (SemVer text; anything else never matches a version filter)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    online: bool = True
    maintenance: bool = False
    updating: bool = False
    """Updating in any rollout (the contention flag)."""


_CLAUSE: Final = re.compile(r"^\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$")


@dataclass(frozen=True, slots=True)
class VersionRange:
    """A conjunction of comparisons such as ``>=1.2.0, <1.4.0``."""

    clauses: tuple[tuple[str, SemVer], ...]

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse comma-separated ``<op><semver>`` clauses (ops ``< <= > >= == !=``)."""
        clauses = []
        for part in text.split(","):
            match = _CLAUSE.match(part)
            if match is None:
                raise ValueError(f"{part.strip()!r}: write a version filter as e.g. '<1.4.0' or '>=1.2.0,<1.4.0'")
            clauses.append((match[1], SemVer.parse(match[2])))
        return cls(tuple(clauses))

    def __contains__(self, version: SemVer) -> bool:
        return all(_holds(version, op, bound) for op, bound in self.clauses)


def _holds(version: SemVer, op: str, bound: SemVer) -> bool:
    match op:
        case "<":
            return version < bound
        case "<=":
            return version <= bound
        case ">":
            return version > bound
        case ">=":
            return version >= bound
        case "==":
            return version == bound
        case _:
            return version != bound


@lru_cache(maxsize=4096)
def _semver(text: str) -> SemVer | None:
    try:
        return SemVer.parse(text)
    except ValueError:
        return None


class Target(BaseModel):
    """What to update; every given filter must hold (an omitted one matches all)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sites: frozenset[str] | None = Field(default=None, description="Only nodes at these sites.")
    hardware_models: frozenset[str] | None = Field(default=None, description="Only these hardware models.")
    version: str | None = Field(default=None, description="Current-version filter, e.g. '<1.4.0'.", examples=["<1.4.0"])
    labels: dict[str, str] = Field(default_factory=dict, description="Labels a node must all carry, with these values.")
    node_ids: frozenset[str] | None = Field(default=None, description="Only these nodes.")

    @field_validator("version")
    @classmethod
    def _version_parses(cls, value: str | None) -> str | None:
        if value is not None:
            VersionRange.parse(value)
        return value

    def matches(self, node: NodeFacts) -> bool:
        """Whether ``node`` is selected by this target."""
        if self.sites is not None and node.site not in self.sites:
            return False
        if self.hardware_models is not None and node.hardware_model not in self.hardware_models:
            return False
        if self.node_ids is not None and node.node_id not in self.node_ids:
            return False
        if any(node.labels.get(key) != value for key, value in self.labels.items()):
            return False
        if self.version is None:
            return True
        version = _semver(node.version)
        return version is not None and version in _range(self.version)


@lru_cache(maxsize=256)
def _range(text: str) -> VersionRange:
    return VersionRange.parse(text)


def select_targets(target: Target, fleet: Iterable[NodeFacts], release_version: SemVer) -> list[NodeFacts]:
    """The nodes ``target`` selects, minus those already on ``release_version``, ordered round-robin over sites."""
    by_site: dict[str, list[NodeFacts]] = {}
    for node in fleet:
        if target.matches(node) and _semver(node.version) != release_version:
            by_site.setdefault(node.site, []).append(node)
    columns = [sorted(nodes, key=lambda n: n.node_id) for _, nodes in sorted(by_site.items())]
    return [node for row in zip_longest(*columns) for node in row if node is not None]

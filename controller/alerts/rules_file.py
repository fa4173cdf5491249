"""The rules file (TOML): fleet defaults and per-site overrides of every rule's parameters, validated at start.

    [defaults.battery]
    horizon_h = 24
    [sites.centre.battery]
    floor_pct = 25

A site inherits the built-in defaults, then ``[defaults.*]``, then its own ``[sites.<id>.*]``. A bad file raises
:class:`RulesFileError` naming the file, the table and the field, e.g.
``rules file alerts.toml: sites.centre.battery.floor_pct: must be ≤ 100``. Parsing is pure: the caller reads the text.
"""

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from controller.alerts.params import RuleSet

_SITE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_BUILT_IN = RuleSet()


class RulesFileError(ValueError):
    """The rules file is not valid; ``problems`` lists each one as ``path: what is wrong``."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source, self.problems = source, problems
        super().__init__(f"rules file {source}: " + "; ".join(problems) + " (action=fix the file and restart)")


@dataclass(frozen=True)
class RulesConfig:
    """Validated parameters for the fleet and for each site named in the rules file."""

    defaults: RuleSet = field(default_factory=RuleSet)
    sites: dict[str, RuleSet] = field(default_factory=dict)

    def for_site(self, site_id: str | None) -> RuleSet:
        """The parameters that apply to nodes of ``site_id`` (fleet defaults when it has no overrides)."""
        return self.defaults if site_id is None else self.sites.get(site_id, self.defaults)


def parse_rules(text: str, source: str = "alerts.toml") -> RulesConfig:
    """Parse and validate rules-file text; raises :class:`RulesFileError` listing every problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesFileError(source, [f"not valid TOML: {exc}"]) from exc
    problems = [f"{key}: unknown table (expected defaults, sites)" for key in data if key not in ("defaults", "sites")]
    defaults_raw = _table(data.get("defaults", {}), "defaults", problems)
    sites_raw = _table(data.get("sites", {}), "sites", problems)
    defaults = _validate(defaults_raw, {}, "defaults", problems)
    sites: dict[str, RuleSet] = {}
    for site_id, raw in sites_raw.items():
        if not _SITE_ID.fullmatch(site_id):
            problems.append(f"sites.{site_id}: not a valid site id")
            continue
        site = _validate(defaults_raw, _table(raw, f"sites.{site_id}", problems), f"sites.{site_id}", problems)
        if site is not None:
            sites[site_id] = site
    if problems:
        raise RulesFileError(source, problems)
    assert defaults is not None  # no problems means it validated
    return RulesConfig(defaults, sites)


def _table(value: Any, path: str, problems: list[str]) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    problems.append(f"{path}: must be a table")
    return {}


def _validate(base: dict[str, Any], override: dict[str, Any], path: str, problems: list[str]) -> RuleSet | None:
    """Merge ``override`` over ``base`` family by family and validate; problems are named under ``path``."""
    merged: dict[str, Any] = {}
    for family in set(base) | set(override):
        below, above = base.get(family, {}), override.get(family, {})
        merged[family] = {**below, **above} if isinstance(below, dict) and isinstance(above, dict) else above
    try:
        return RuleSet.model_validate(merged)
    except ValidationError as exc:
        problems.extend(f"{path}.{_where(err['loc'])}: {_what(err)}" for err in exc.errors() if _own(err, override))
        return None


def _own(err: Any, override: dict[str, Any]) -> bool:
    """False for a field a site inherits unchanged: its problem is reported once, under ``defaults``."""
    loc = err["loc"]
    if not override or len(loc) < 2:
        return True
    if loc[0] not in override:
        return False
    family = override[loc[0]]
    return not isinstance(family, dict) or loc[1] in family


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _what(err: Any) -> str:
    kind, ctx = err["type"], err.get("ctx", {})
    bounds = {"less_than_equal": "≤ {le}", "greater_than_equal": "≥ {ge}", "greater_than": "> {gt}"}
    if kind in bounds:
        return "must be " + bounds[kind].format(**{k: _number(v) for k, v in ctx.items()})
    if kind == "less_than":
        return f"must be < {_number(ctx['lt'])}"
    if kind == "extra_forbidden":
        family = err["loc"][0] if err["loc"] else ""
        known = (
            type(getattr(_BUILT_IN, family)).model_fields if family in RuleSet.model_fields else RuleSet.model_fields
        )
        return "unknown field (known: " + ", ".join(known) + ")"
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


def _number(value: Any) -> Any:
    """100.0 → 100: bounds read as the operator wrote them."""
    return int(value) if isinstance(value, float) and value.is_integer() else value

"""Read the Fleet overview dashboard and expand its panels' InfluxQL the way Grafana would, to run them in tests."""

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD_PATH = Path(__file__).parents[2] / "grafana" / "dashboards" / "fleet-overview.json"

_MACRO = re.compile(r"\$\{?[A-Za-z_]\w*(?::\w+)?\}?")


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel, with Grafana's macros expanded."""

    panel: str
    ref_id: str
    query: str


def load_dashboard(path: Path = DASHBOARD_PATH) -> dict[str, Any]:
    """The dashboard model as Grafana provisions it."""
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def _panels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for item in items:
        if item.get("type") == "row":
            found.extend(_panels(item.get("panels", [])))
        else:
            found.append(item)
    return found


def panel_queries(dashboard: dict[str, Any], *, time_range: str = "1h", interval: str = "10s") -> list[PanelQuery]:
    """Every panel target's and annotation's raw InfluxQL with ``$timeFilter``, ``$__interval`` and ``$node`` expanded.

    Raises ValueError naming the panel when it has no target, a target is not raw InfluxQL, or a macro is left.
    """
    expansions = {
        "$timeFilter": f"time > now() - {time_range}",
        "$__interval": interval,
        "$interval": interval,
        "${node:regex}": ".*",
        "${node}": ".*",
        "$node": ".*",
    }

    def expand(title: str, ref_id: str, raw: str) -> PanelQuery:
        query = raw
        for macro, value in expansions.items():
            query = query.replace(macro, value)
        left = _MACRO.findall(query)
        if left:
            raise ValueError(f"panel {title!r} uses macros this check cannot expand: {left}")
        return PanelQuery(title, ref_id, query)

    queries = []
    for panel in _panels(dashboard.get("panels", [])):
        title = panel.get("title", "<untitled>")
        targets = panel.get("targets") or []
        if not targets:
            raise ValueError(f"panel {title!r} has no query")
        for target in targets:
            raw = target.get("query")
            if not target.get("rawQuery") or not raw:
                raise ValueError(f"panel {title!r} target {target.get('refId')!r} is not a raw InfluxQL query")
            queries.append(expand(title, str(target.get("refId", "A")), raw))
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("builtIn"):
            continue  # Grafana's own annotations, stored in Grafana
        queries.append(expand(f"annotation {annotation.get('name')}", "annotation", annotation["query"]))
    return queries

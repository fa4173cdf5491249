"""Read and write a real InfluxDB through its v1 HTTP API."""

from typing import Any

import httpx


class InfluxClient:
    """Minimal v1 client bound to one database, for assertions on what was stored."""

    def __init__(self, url: str, db: str) -> None:
        self.url = url
        self.db = db
        self._http = httpx.Client(base_url=url, timeout=10.0)

    def create(self) -> None:
        """Create the database (idempotent)."""
        self.admin(f'CREATE DATABASE "{self.db}"')

    def admin(self, statement: str) -> None:
        """Run a statement that changes server state."""
        self._http.post("/query", data={"q": statement}).raise_for_status()

    def write(self, lines: list[str]) -> None:
        """Write line-protocol lines with nanosecond precision."""
        response = self._http.post("/write", params={"db": self.db, "precision": "ns"}, content="\n".join(lines))
        if response.status_code != 204:
            raise AssertionError(f"write failed {response.status_code}: {response.text}")

    def query(self, influxql: str) -> list[dict[str, Any]]:
        """Rows of an InfluxQL query, each a dict of column → value plus the series' tags."""
        response = self._http.get("/query", params={"db": self.db, "q": influxql, "epoch": "ns"})
        response.raise_for_status()
        rows: list[dict[str, Any]] = []
        for result in response.json()["results"]:
            if "error" in result:
                raise AssertionError(f"query {influxql!r} failed: {result['error']}")
            for series in result.get("series", []):
                tags = series.get("tags", {})
                rows.extend(
                    {**tags, **dict(zip(series["columns"], values, strict=True))} for values in series["values"]
                )
        return rows

    def count(self, measurement: str, field: str = "seq") -> int:
        """Number of points of one measurement (counted on a field every point has)."""
        rows = self.query(f'SELECT count("{field}") FROM "{measurement}"')  # noqa: S608 - test helper
        return int(rows[0]["count"]) if rows else 0

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

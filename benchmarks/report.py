"""The table and the targets of issue 7, from the rows measured in one run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .wrk import Result


@dataclass(frozen=True)
class Row:
    """One scenario at one connection count."""

    scenario: str
    connections: int
    result: Result
    note: str = ""  # e.g. what the flood got

    @property
    def warning(self) -> str:
        """Why the numbers may not mean what they seem: answers other than 2xx, socket errors."""
        problems = []
        if self.result.non_2xx:
            problems.append(f"{self.result.non_2xx} non-2xx")
        if self.result.socket_errors:
            problems.append(f"{self.result.socket_errors} socket errors")
        return ", ".join(problems)


@dataclass(frozen=True)
class Target:
    what: str
    value: float
    limit: float
    at_least: bool  # value must be >= limit; else <= limit

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def line(self) -> str:
        sign = "≥" if self.at_least else "≤"
        mark = "PASS" if self.passed else "FAIL"
        return f"{mark}  {self.what}: {self.value:.2f} (target {sign} {self.limit:g})"


Rows = Mapping[tuple[str, int], Row]


def ratio(rows: Rows, scenario: str, connections: int, base: str = "ceiling") -> float | None:
    """``scenario``'s 2xx per second over ``base``'s at the same connection count."""
    row, reference = rows.get((scenario, connections)), rows.get((base, connections))
    if row is None or reference is None or not reference.result.ok_per_second:
        return None
    return row.result.ok_per_second / reference.result.ok_per_second


def targets(rows: Rows, bcrypt_alone: float | None) -> list[Target]:
    """The targets that the measured rows let us check."""
    found = []
    for (scenario, connections), row in sorted(rows.items(), key=lambda item: item[0][1]):
        at = f"at {connections} connections"
        minimums = {"anonymous": 0.90, "cached": 0.85}
        if scenario in minimums and (value := ratio(rows, scenario, connections)) is not None:
            found.append(Target(f"{scenario} / ceiling {at}", value, minimums[scenario], True))
        if scenario in ("users-100k", "patterns-1000"):
            value = ratio(rows, scenario, connections, base="cached")
            if value is not None:
                found.append(Target(f"{scenario} / cached (10 users) {at}", value, 0.90, True))
        if scenario == "cold" and bcrypt_alone:
            value = row.result.ok_per_second / bcrypt_alone
            found.append(Target(f"cold / what bcrypt alone allows {at}", value, 0.90, True))
        if scenario == "flood":
            found.append(
                Target(f"flood: p99 ms of the cached logins {at}", row.result.p99_ms, 50, False)
            )
        if scenario in ("anonymous", "cached") and connections == 16:
            found.append(Target(f"{scenario}: p99 ms {at}", row.result.p99_ms, 10, False))
    return found


def _cells(row: Row, rows: Rows) -> list[str]:
    value = ratio(rows, row.scenario, row.connections)
    return [
        row.scenario,
        str(row.connections),
        f"{row.result.ok_per_second:,.0f}",
        f"{row.result.p50_ms:.1f}",
        f"{row.result.p99_ms:.1f}",
        "" if value is None else f"{value:.2f}",
        "; ".join(part for part in (row.warning, row.note) if part),
    ]


HEADERS = ["scenario", "conns", "req/s", "p50 ms", "p99 ms", "× ceiling", "warnings, notes"]


def table(rows: Sequence[Row], markdown: bool = False) -> str:
    """The measured rows, aligned for a terminal or as a Markdown table."""
    by_key = {(row.scenario, row.connections): row for row in rows}
    lines = [HEADERS, *(_cells(row, by_key) for row in rows)]
    if markdown:
        text = [f"| {' | '.join(HEADERS)} |", "|" + " --- |" * len(HEADERS)]
        text += [f"| {' | '.join(cells)} |" for cells in lines[1:]]
        return "\n".join(text)
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(HEADERS))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i in (0, len(HEADERS) - 1) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()
        for cells in lines
    )

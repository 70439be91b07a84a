"""The tables and the targets (issue 7's, and issue 15's for logins in a crowd), from the rows
measured in one run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .loadgen import Sample
from .wrk import Result

# p99 at 16 connections of the cheap requests (anonymous, cached). It was 10 ms while logins
# beyond the bcrypt turns were refused; threads that hold waiting logins cost the cheap ones a
# little, and a refused login costs its user a failed pull.
CHEAP_P99_MS = 25
FLOOD_P99_MS = 50  # the legitimate requests while wrong passwords flood in
# A burst of N first logins: its last answer within this many times what bcrypt alone needs for
# N checks on the same cores, plus BURST_SLACK_SECONDS (connections, tokens, the queue's turns).
BURST_FACTOR = 1.3
BURST_SLACK_SECONDS = 0.3
FAIR_LOGINS_P99_SECONDS = 2.0  # first logins from an address of their own, during the flood


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
                Target(
                    f"flood: p99 ms of the cached logins {at}",
                    row.result.p99_ms,
                    FLOOD_P99_MS,
                    False,
                )
            )
        if scenario in ("anonymous", "cached") and connections == 16:
            found.append(Target(f"{scenario}: p99 ms {at}", row.result.p99_ms, CHEAP_P99_MS, False))
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
    return _render(lines, markdown, left=(0, len(HEADERS) - 1))


@dataclass(frozen=True)
class CrowdRun:
    """One measurement of a login-crowd row (benchmarks/crowd.py): its samples by kind
    (``logins`` first), and the figures its targets need (spray: ``checks`` spent, their
    ``bound``, the bucket's ``burst`` and ``per_minute``, the run's ``seconds``)."""

    name: str
    samples: dict[str, Sample]
    figures: dict[str, float] = field(default_factory=dict)

    @property
    def key(self) -> float:
        """What the median round is chosen by: the last answer of a burst, the p99 of the
        first logins under the flood, the checks a sprayer got."""
        if self.name == "spray":
            return self.figures["checks"]
        logins = self.samples["logins"]
        return logins.last_seconds if self.name.startswith("burst") else logins.latency_ms(99)


def median_crowd_run(runs: Sequence[CrowdRun]) -> CrowdRun:
    """The round with the median :attr:`CrowdRun.key`, whole."""
    return sorted(runs, key=lambda run: run.key)[len(runs) // 2]


def burst_size(name: str) -> int:
    """N of ``burst-N``."""
    return int(name.removeprefix("burst-"))


def burst_limit(count: int, bcrypt_alone: float) -> float:
    """Seconds the last of ``count`` simultaneous first logins may take, when bcrypt alone
    checks ``bcrypt_alone`` a second on the same cores."""
    return BURST_FACTOR * count / bcrypt_alone + BURST_SLACK_SECONDS


def crowd_targets(
    runs: Mapping[str, Sequence[CrowdRun]], bcrypt_alone: float | None
) -> list[Target]:
    """The login-crowd targets: times and counts from each row's median round; answers that
    must all be 200 counted over every round."""
    found = []
    for name, rounds in runs.items():
        run = median_crowd_run(rounds)
        failed = sum(each.samples["logins"].not_ok for each in rounds)
        of = f"in {len(rounds)} round{'s' if len(rounds) > 1 else ''}"
        if name.startswith("burst"):
            found.append(Target(f"{name}: answers other than 200 {of}", failed, 0, False))
            if bcrypt_alone:
                limit = round(burst_limit(burst_size(name), bcrypt_alone), 2)
                last = run.samples["logins"].last_seconds
                found.append(Target(f"{name}: seconds to the last answer", last, limit, False))
        elif name == "fair":
            found.append(Target(f"fair: first logins not answered 200 {of}", failed, 0, False))
            p99 = run.samples["logins"].latency_ms(99) / 1000
            found.append(
                Target("fair: p99 s of the first logins", p99, FAIR_LOGINS_P99_SECONDS, False)
            )
            for kind in ("cached", "refresh-token", "anonymous"):
                p99_ms = run.samples[kind].latency_ms(99)
                found.append(Target(f"fair: p99 ms of {kind}", p99_ms, FLOOD_P99_MS, False))
        elif name == "spray":
            checks, bound = run.figures["checks"], round(run.figures["bound"], 1)
            found.append(Target("spray: bcrypt checks spent", checks, bound, False))
    return found


def _crowd_note(run: CrowdRun, kind: str, bcrypt_alone: float | None) -> str:
    if kind != "logins":
        return ""
    if run.name.startswith("burst") and bcrypt_alone:
        count = burst_size(run.name)
        return (
            f"bcrypt alone: {count / bcrypt_alone:.2f} s for {count} checks; "
            f"limit {burst_limit(count, bcrypt_alone):.2f} s"
        )
    if run.name == "fair" and bcrypt_alone:
        rate = run.figures["checks_per_second"]
        return f"bcrypt checks: {rate:.1f}/s, {rate / bcrypt_alone:.2f} of bcrypt alone"
    if run.name == "spray":
        f = run.figures
        return (
            f"bcrypt checks {f['checks']:.0f}; bound {f['burst']:.0f} + "
            f"{f['per_minute'] / 60:g}/s × {f['seconds']:.1f} s = {f['bound']:.1f}"
        )
    return ""


CROWD_HEADERS = ["row", "requests", "answers", "p50 ms", "p99 ms", "last s", "notes"]


def crowd_table(
    runs: Sequence[CrowdRun], bcrypt_alone: float | None, markdown: bool = False
) -> str:
    """One line per kind of request of each login-crowd run."""
    lines = [CROWD_HEADERS]
    for run in runs:
        for kind, sample in run.samples.items():
            label = run.name if len(run.samples) == 1 else f"{run.name}: {kind}"
            lines.append(
                [
                    label,
                    str(sample.requests),
                    sample.status_text(),
                    f"{sample.latency_ms(50):.1f}",
                    f"{sample.latency_ms(99):.1f}",
                    f"{sample.last_seconds:.2f}",
                    _crowd_note(run, kind, bcrypt_alone),
                ]
            )
    return _render(lines, markdown, left=(0, 2, len(CROWD_HEADERS) - 1))


def _render(lines: list[list[str]], markdown: bool, left: Sequence[int]) -> str:
    headers = lines[0]
    if markdown:
        text = [f"| {' | '.join(headers)} |", "|" + " --- |" * len(headers)]
        text += [f"| {' | '.join(cells)} |" for cells in lines[1:]]
        return "\n".join(text)
    widths = [max(len(cells[i]) for cells in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()
        for cells in lines
    )

"""``python3 -m benchmarks [--duration S] [--repeat N] [--connections 16,64] [--only NAME,...]``

Starts the real stack (Debian's docker-registry, uWSGI with uwsgi.ini, nginx with the project's
template) for each configuration, drives it with wrk on loopback, and prints requests per second
and p50/p99 latency per scenario and connection count, as ratios to a ceiling measured in the
same run; then the login-crowd rows (bursts of first logins, fair turns under a flood, a
sprayer), driven from several loopback addresses by benchmarks/loadgen.py; then the targets.
Like ``auth_service.stack``, it starts with the standard library only: it installs wrk and the
stack's Debian packages and ``.venv``, then re-runs itself there.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from auth_service.stack.main import (
    REPO,
    STACK_PACKAGES,
    StackError,
    ensure_debian_packages,
    ensure_venv,
    in_venv,
)

PACKAGES = {**STACK_PACKAGES, "wrk": "wrk"}


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in _names(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: not a comma-separated list of numbers"
        ) from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: connection counts must be 1 or more")
    return counts


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m benchmarks", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument(
        "--duration", type=float, default=5, help="seconds per wrk run, and of fair's probes (5)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds: runs per row, the median reported (3)"
    )
    parser.add_argument("--connections", type=_counts, default=[16, 64], help="16,64 by default")
    parser.add_argument(
        "--only",
        type=_names,
        help="rows to run, comma-separated (ratios need ceiling; targets what they need): "
        "ceiling, anonymous, cached, scopes-10, flood, users-100k, patterns-1000, cold, "
        "burst-8, burst-32, burst-128, fair, spray, proxy-pull, proxy-decision; or groups: keep "
        "(ceiling, anonymous, cached), burst (the three bursts), crowd (burst, fair, spray, "
        "keep), proxy (proxy-pull, proxy-decision)",
    )
    parser.add_argument(
        "--processes", type=int, help="override uwsgi.ini's worker processes, to compare"
    )
    parser.add_argument(
        "--threads", type=int, help="override uwsgi.ini's threads per worker, to compare"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        if not in_venv():
            ensure_debian_packages(PACKAGES)
            python = ensure_venv()
            # Continue in the environment that has the project's dependencies.
            os.chdir(REPO)
            os.execv(python, [str(python), "-m", "benchmarks", *argv])  # noqa: S606
        from .run import BenchmarkError, Workers, run

        workers = Workers(args.processes, args.threads)
        try:
            return run(
                args.duration, args.connections, args.only, workers, args.markdown, args.repeat
            )
        except BenchmarkError as exc:
            print(f"benchmarks: {exc}", file=sys.stderr)
            return 1
    except StackError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""The benchmarks' own logic, without a stack or wrk: reading wrk's output, the generated
configurations (served by the real app), and the table and targets."""

import base64

import pytest
from cryptography import x509

from auth_service import create_app
from auth_service.stack.main import REPO
from benchmarks import report, scenarios, wrk
from benchmarks.__main__ import parse_args
from benchmarks.run import Measured, bcrypt_alone, median_run, print_results

from . import helpers

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:40123/v2/token?service=bench-registry&scope=x
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.61ms    2.03ms  48.10ms   79.52%
    Req/Sec     1.43k   112.34     1.70k    71.00%
  Latency Distribution
     50%  850.00us
     75%    6.12ms
     90%    7.80ms
     99%    1.20s
  28571 requests in 10.01s, 21.13MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 71
Requests/sec:   2854.35
Transfer/sec:      2.11MB
status 401: 120
status 503: 7
"""


def test_wrk_output_is_read_in_milliseconds():
    result = wrk.parse(WRK_OUTPUT)
    assert result.requests == 28571
    assert result.seconds == pytest.approx(10.01)
    assert result.p50_ms == pytest.approx(0.85)
    assert result.p99_ms == pytest.approx(1200.0)
    assert result.non_2xx == 71
    assert result.socket_errors == 3
    assert result.statuses == {401: 120, 503: 7}


def test_throughput_counts_only_2xx():
    assert wrk.parse(WRK_OUTPUT).ok_per_second == pytest.approx((28571 - 71) / 10.01)


def test_clean_wrk_output_has_no_errors():
    clean = "\n".join(
        line for line in WRK_OUTPUT.splitlines() if "errors" not in line and "Non-2xx" not in line
    )
    result = wrk.parse(clean)
    assert (result.non_2xx, result.socket_errors) == (0, 0)


def test_wrk_output_without_latencies_is_an_error():
    with pytest.raises(wrk.WrkError, match="--latency"):
        wrk.parse("Running 10s test\n  10 requests in 1.00s, 1KB read\n")


def test_wrk_command():
    args = wrk.command("http://x/", 16, 10, ["Authorization: Basic abc"])
    assert args[:5] == ["wrk", "-t2", "-c16", "-d10s", "--latency"]
    assert args[args.index("-H") + 1] == "Authorization: Basic abc"
    assert args[-1] == "http://x/"
    args = wrk.command("http://x/", 64, 2.5, logins=("user%06d", 999, "pw"))
    assert args[2:4] == ["-c64", "-d2.5s"]
    assert args[args.index("-s") + 1] == str(REPO / "benchmarks" / "logins.lua")
    assert args[-5:] == ["http://x/", "--", "user%06d", "999", "pw"]


def test_users_document_reuses_one_hash():
    users = scenarios.users_document(1000, "$2b$04$hash", ["g"])
    assert len(users) == 1000
    assert {user["pass_hash"] for user in users.values()} == {"$2b$04$hash"}
    assert users[scenarios.USER]["groups"] == ["g"]


def test_groups_document_holds_that_many_patterns():
    groups = scenarios.groups_document(1000)
    assert len(groups) == 10
    assert sum(len(group["repositories"]) for group in groups.values()) == 1000
    assert not any(key.startswith("bench/") for g in groups.values() for key in g["repositories"])


def test_scenarios_query_and_credentials():
    (ten,) = [s for s in scenarios.SCENARIOS if s.name == "scopes-10"]
    assert ten.query.count("scope=") == 10
    assert ten.query.startswith(f"service={scenarios.SERVICE}&")
    (header,) = ten.headers
    encoded = header.removeprefix("Authorization: Basic ")
    assert base64.b64decode(encoded).decode() == f"{scenarios.USER}:{scenarios.PASSWORD}"
    anonymous = next(s for s in scenarios.SCENARIOS if s.name == "anonymous")
    assert anonymous.headers == []
    cold = next(s for s in scenarios.SCENARIOS if s.name == "cold")
    assert (cold.headers, cold.logins) == ([], ("user%06d", 999, scenarios.PASSWORD))


@pytest.mark.parametrize("configuration", [scenarios.BASE, scenarios.PATTERNS_1000])
def test_generated_configuration_grants_every_scenario(tmp_path, configuration):
    """The generated files are valid for the real service, and every request the benchmarks
    send for them gets a token with exactly the access asked for."""
    pass_hash = helpers.hash_password(scenarios.PASSWORD)
    config_dir = scenarios.write_config(tmp_path, configuration, pass_hash)
    client = create_app({"CONFIG_DIR": config_dir}).test_client()
    cert = x509.load_pem_x509_certificate((config_dir / "token.crt").read_bytes())
    for scenario in scenarios.SCENARIOS:
        if scenario.configuration.ceiling:
            continue
        headers = dict(line.split(": ", 1) for line in scenario.headers)
        if scenario.logins:  # the first of the users logins.lua logs in as
            name_format, _, password = scenario.logins
            headers = helpers.basic(name_format % 1, password)
        response = client.get(f"/v2/token?{scenario.query}", headers=headers)
        assert response.status_code == 200, (scenario.name, response.json)
        claims = helpers.verify_token(
            response.json["token"], cert, scenarios.SERVICE, scenarios.ISSUER
        )
        asked = {
            (kind, name): set(actions.split(","))
            for kind, name, actions in (scope.split(":") for scope in scenario.scopes)
        }
        assert helpers.access_of(claims) == asked, scenario.name


def test_arguments():
    args = parse_args(["--connections", "8, 32", "--only", "ceiling,cold"])
    assert (args.duration, args.repeat) == (5, 3)
    assert (args.connections, args.only) == ([8, 32], ["ceiling", "cold"])
    with pytest.raises(SystemExit):
        parse_args(["--connections", "0"])


def _row(scenario, connections, per_second, p99=5.0, non_2xx=0):
    requests = int(per_second * 10) + non_2xx
    result = wrk.Result(requests, 10.0, 1.0, p99, non_2xx=non_2xx)
    return report.Row(scenario, connections, result)


def test_a_row_is_its_median_run_whole():
    runs = [_row("cached", 16, 900, p99=30.0), _row("cached", 16, 4000, p99=8.0)]
    runs.append(_row("cached", 16, 4200, p99=9.0))
    assert median_run(runs) is runs[1]
    assert median_run(runs[:1]) is runs[0]


def test_targets_from_ratios():
    rows = [
        _row("ceiling", 16, 1000),
        _row("anonymous", 16, 950, p99=12),
        _row("cached", 16, 800),
        _row("users-100k", 16, 760),
        _row("cold", 16, 27),
        _row("flood", 16, 500, p99=40),
    ]
    found = report.targets({(r.scenario, r.connections): r for r in rows}, bcrypt_alone=30)
    verdicts = {target.what: (round(target.value, 2), target.passed) for target in found}
    assert verdicts == {
        "anonymous / ceiling at 16 connections": (0.95, True),
        "anonymous: p99 ms at 16 connections": (12, False),
        "cached / ceiling at 16 connections": (0.8, False),
        "cached: p99 ms at 16 connections": (5, True),
        "users-100k / cached (10 users) at 16 connections": (0.95, True),
        "cold / what bcrypt alone allows at 16 connections": (0.9, True),
        "flood: p99 ms of the cached logins at 16 connections": (40, True),
    }


def test_table_warns_about_error_answers():
    rows = [_row("ceiling", 16, 1000), _row("anonymous", 16, 500, non_2xx=3)]
    text = report.table(rows)
    assert "3 non-2xx" in text.splitlines()[2]
    markdown = report.table(rows, markdown=True).splitlines()
    assert markdown[0].startswith("| scenario |")
    assert markdown[2].startswith("| ceiling | 16 | 1,000 |")
    assert " 0.50 " in markdown[3]


def test_results_are_each_rows_median_round_against_the_median_bcrypt(capsys):
    measured = Measured()
    for ceiling, cold in ((1000, 27), (1200, 29), (400, 10)):
        measured.runs.setdefault(("ceiling", 16), []).append(_row("ceiling", 16, ceiling))
        measured.runs.setdefault(("cold", 16), []).append(_row("cold", 16, cold))
    measured.bcrypt += [(31.0, "second"), (30.0, "first"), (90.0, "third")]
    assert print_results(measured, markdown=False) == 2  # a target failed
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["ceiling", "16", "1,000"]  # the rows in measured order
    assert lines[2].split()[:3] == ["cold", "16", "27"]
    assert "second, the median of 3" in "\n".join(lines)
    assert "cold at 16 connections: 0.87 of that" in "\n".join(lines)  # 27 / 31
    assert "FAIL  cold / what bcrypt alone allows at 16 connections: 0.87 (target ≥ 0.9)" in lines


def test_bcrypt_alone_runs_a_thread_per_core_the_workers_may_use(config_dir, monkeypatch):
    monkeypatch.setattr("benchmarks.run.BCRYPT_CHECKS", 1)
    monkeypatch.setattr("benchmarks.run.BCRYPT_COST", 4)
    env = {"AUTH_SERVICE_BCRYPT_CONCURRENCY": "1"}
    rate, how = bcrypt_alone(config_dir, env)
    assert rate > 0
    assert how.startswith("bcrypt alone (cost 4): 1 threads at once (min of ")

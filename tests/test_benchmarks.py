"""The benchmarks' own logic, without a stack or wrk: reading wrk's output, the generated
configurations (served by the real app), and the table and targets."""

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qs

import pytest
from cryptography import x509

from auth_service import create_app
from auth_service.stack.main import REPO
from benchmarks import common, crowd, loadgen, report, scenarios, wrk
from benchmarks.__main__ import parse_args
from benchmarks.common import BenchmarkError
from benchmarks.loadgen import Answer, Sample
from benchmarks.run import Measured, bcrypt_alone, expand_only, median_run, print_results

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
        _row("anonymous", 16, 950, p99=26),
        _row("cached", 16, 800),
        _row("users-100k", 16, 760),
        _row("cold", 16, 27),
        _row("flood", 16, 500, p99=40),
    ]
    found = report.targets({(r.scenario, r.connections): r for r in rows}, bcrypt_alone=30)
    verdicts = {target.what: (round(target.value, 2), target.passed) for target in found}
    assert verdicts == {
        "anonymous / ceiling at 16 connections": (0.95, True),
        "anonymous: p99 ms at 16 connections": (26, False),
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


# The login-crowd rows: the load generator, the spray bound, the targets.


def test_percentile_is_the_nearest_rank():
    values = [float(v) for v in range(10, 0, -1)]  # 10..1, unsorted on purpose
    assert loadgen.percentile(values, 50) == 5.0
    assert loadgen.percentile(values, 90) == 9.0
    assert loadgen.percentile(values, 99) == 10.0
    assert loadgen.percentile(values[:8], 99) == 10.0  # of 8 answers, p99 is the slowest
    assert loadgen.percentile(list(range(1, 201)), 99) == 198
    assert loadgen.percentile([], 99) == 0.0


def _sample(*answers, started=100.0):
    return Sample(
        tuple(Answer(status, seconds, ended, status == 200) for status, seconds, ended in answers),
        started,
    )


def test_a_sample_counts_statuses_and_times_to_its_last_answer():
    sample = _sample((200, 0.5, 100.5), (503, 0.01, 100.02), (0, 40.0, 101.5), (200, 1.2, 101.2))
    assert sample.requests == 4
    assert sample.statuses == {0: 1, 200: 2, 503: 1}
    assert sample.status_text() == "error: 1, 200: 2, 503: 1"
    assert sample.not_ok == 2
    assert sample.last_seconds == pytest.approx(1.5)
    assert sample.latency_ms(50) == pytest.approx(500)
    tokenless = Sample((Answer(200, 0.1, 100.1, token=False),), 100.0)
    assert tokenless.not_ok == 1  # a 200 without a token is no login


def test_load_generator_sends_from_the_address_it_binds():
    """burst and Loop connect from their source address, as nginx's $remote_addr will see."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802 (http.server's name)
            seen.append((self.client_address[0], self.path, self.headers.get("Authorization")))
            body = b'{"token":"t"}' if self.path.startswith("/ok") else b"{}"
            self.send_response(200 if self.path.startswith("/ok") else 401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        requests = [loadgen.Request("GET", f"/ok/{i}", {"Authorization": "x"}) for i in range(5)]
        sample = loadgen.burst("127.0.0.1", port, "127.0.0.2", requests)
        assert sample.statuses == {200: 5} and sample.not_ok == 0
        items = iter([loadgen.Request("GET", f"/no/{i}") for i in range(7)])
        loop = loadgen.Loop("127.0.0.1", port, "127.0.0.3", 3, loadgen.shared(items)).start()
        looped = loop.wait(timeout=30)
        assert looped.statuses == {401: 7} and looped.not_ok == 7
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(seen[:5]) == [("127.0.0.2", f"/ok/{i}", "x") for i in range(5)]
    assert sorted(seen[5:]) == [("127.0.0.3", f"/no/{i}", None) for i in range(7)]


def test_spray_bound_is_the_burst_and_the_refill_over_the_run():
    assert crowd.spray_bound(100, 60, 4.5) == pytest.approx(104.5)
    assert crowd.spray_bound(200, 30, 10) == pytest.approx(205)
    assert crowd.spray_bound(0, 60, 10) == 0  # no address bucket: no bound to count on


def test_counter_value_sums_a_metrics_samples():
    exposition = (
        "# HELP auth_bcrypt_checks_total bcrypt password checks run.\n"
        "# TYPE auth_bcrypt_checks_total counter\n"
        "auth_bcrypt_checks_total 103.0\n"
        "auth_bcrypt_checks_totally 5.0\n"
        'auth_credential_cache_total{result="hit"} 7.0\n'
        'auth_credential_cache_total{result="miss"} 2.0\n'
    )
    assert crowd.counter_value(exposition, "auth_bcrypt_checks_total") == 103
    assert crowd.counter_value(exposition, "auth_credential_cache_total") == 9
    assert crowd.counter_value(exposition, "auth_other_total") == 0


def test_the_service_counts_bcrypt_checks_under_the_name_spray_reads(config_dir):
    client = create_app({"CONFIG_DIR": config_dir}).test_client()
    before = crowd.counter_value(client.get("/metrics").text, "auth_bcrypt_checks_total")
    response = client.get(
        f"/v2/token?service={helpers.SERVICE}", headers=helpers.basic("alice", "nope")
    )
    assert response.status_code == 401
    after = crowd.counter_value(client.get("/metrics").text, "auth_bcrypt_checks_total")
    assert after == before + 1


def test_fresh_users_are_never_handed_out_twice():
    users = crowd.FreshUsers(scenarios.Configuration("c", users=1010), first=1001)
    assert users.take(3) == ["user001001", "user001002", "user001003"]
    assert users.take(6) == [f"user{i:06d}" for i in range(1004, 1010)]
    with pytest.raises(BenchmarkError, match="too few users"):
        users.take(1)


def test_crowd_requests_get_what_each_row_expects_from_the_real_service(tmp_path):
    """A first login gets a token, the sprayer's password 401, the refresh grant a token."""
    pass_hash = helpers.hash_password(scenarios.PASSWORD)
    configuration = scenarios.Configuration("small", users=20)
    config_dir = scenarios.write_config(tmp_path, configuration, pass_hash)
    client = create_app({"CONFIG_DIR": config_dir}).test_client()
    stack = SimpleNamespace(realm="http://127.0.0.1:1/v2/token")

    def send(request):
        return client.open(
            request.path, method=request.method, headers=request.headers, data=request.body
        )

    (fresh,) = crowd.FreshUsers(configuration, first=2).take(1)
    assert send(crowd.login(stack, fresh)).status_code == 200
    assert send(crowd.login(stack, "user000001", crowd.SPRAY_PASSWORD)).status_code == 401
    password_grant = {
        "grant_type": "password",
        "username": scenarios.USER,
        "password": scenarios.PASSWORD,
        "service": scenarios.SERVICE,
        "access_type": "offline",
    }
    refresh = client.post("/v2/token", data=password_grant).json["refresh_token"]
    answer = send(crowd.refresh_request(stack, refresh))
    assert answer.status_code == 200 and "token" in answer.json
    assert parse_qs(crowd.refresh_request(stack, refresh).body.decode())["grant_type"] == [
        "refresh_token"
    ]


def test_only_expands_groups_and_refuses_unknown_names():
    assert expand_only(None) is None
    assert expand_only(["keep"]) == {"ceiling", "anonymous", "cached"}
    assert expand_only(["burst", "spray"]) == {"burst-8", "burst-32", "burst-128", "spray"}
    crowd_rows = {"burst-8", "burst-32", "burst-128", "fair", "spray"}
    assert expand_only(["crowd"]) == crowd_rows | {"ceiling", "anonymous", "cached"}
    with pytest.raises(BenchmarkError, match="unknown scenario fiar"):
        expand_only(["fiar"])
    assert parse_args(["--only", "burst,fair,spray,keep"]).only == [
        "burst",
        "fair",
        "spray",
        "keep",
    ]


def _burst(name, last, not_ok=0, started=0.0):
    answers = [Answer(200, last, started + last, True)]
    answers += [Answer(503, 0.02, started + 0.02)] * not_ok
    return report.CrowdRun(name, {"logins": Sample(tuple(answers), started)})


def _fair(login_seconds, cheap_ms, failed=0):
    cheap = Sample(tuple(Answer(200, cheap_ms / 1000, 1.0, True) for _ in range(3)), 0.0)
    logins = Sample(
        (Answer(200, login_seconds, login_seconds, True), *[Answer(503, 10.0, 10.0)] * failed),
        0.0,
    )
    samples = {"logins": logins, "cached": cheap, "refresh-token": cheap, "anonymous": cheap}
    return report.CrowdRun("fair", samples, {"checks_per_second": 30.0})


def _spray(checks, seconds=5.0):
    figures = {
        "checks": checks,
        "bound": crowd.spray_bound(100, 60, seconds),
        "burst": 100,
        "per_minute": 60,
        "seconds": seconds,
    }
    return report.CrowdRun("spray", {"logins": Sample((), 0.0)}, figures)


def test_burst_limit_is_bcrypt_alone_for_n_checks_with_room():
    assert report.burst_limit(32, bcrypt_alone=32.0) == pytest.approx(1.3 + 0.3)
    assert report.burst_limit(128, bcrypt_alone=32.0) == pytest.approx(5.2 + 0.3)


def test_crowd_targets():
    runs = {
        # the median round decides the time; a 503 in any round fails the row
        "burst-32": [
            _burst("burst-32", 1.2),
            _burst("burst-32", 1.7, not_ok=1),
            _burst("burst-32", 1.5),
        ],
        "burst-8": [_burst("burst-8", 0.7)],
        "fair": [_fair(2.5, 12), _fair(1.5, 60), _fair(1.8, 40)],
        "spray": [_spray(106), _spray(104), _spray(105)],
    }
    found = report.crowd_targets(runs, bcrypt_alone=32.0)
    verdicts = {
        target.what: (round(target.value, 2), target.limit, target.passed) for target in found
    }
    assert verdicts == {
        "burst-32: answers other than 200 in 3 rounds": (1, 0, False),
        "burst-32: seconds to the last answer": (1.5, 1.6, True),
        "burst-8: answers other than 200 in 1 round": (0, 0, True),
        "burst-8: seconds to the last answer": (0.7, 0.62, False),
        "fair: first logins not answered 200 in 3 rounds": (0, 0, True),
        "fair: p99 s of the first logins": (1.8, 2.0, True),
        "fair: p99 ms of cached": (40, 50, True),
        "fair: p99 ms of refresh-token": (40, 50, True),
        "fair: p99 ms of anonymous": (40, 50, True),
        "spray: bcrypt checks spent": (105, 105.0, True),
    }
    assert not report.crowd_targets({"fair": [_fair(1.0, 5, failed=1)]}, None)[0].passed
    # without bcrypt alone measured, a burst has no time limit to check
    assert [t.what for t in report.crowd_targets({"burst-8": runs["burst-8"]}, None)] == [
        "burst-8: answers other than 200 in 1 round"
    ]


def test_cheap_requests_p99_target_is_25_ms():
    rows = {("cached", 16): _row("cached", 16, 1000, p99=24.9)}
    (target,) = [t for t in report.targets(rows, None) if "p99" in t.what]
    assert (target.limit, target.passed) == (25, True)


def test_crowd_results_print_a_table_and_their_targets(capsys):
    measured = Measured()
    measured.bcrypt.append((32.0, "bcrypt alone"))
    measured.crowd["burst-8"] = [_burst("burst-8", 0.4)]
    measured.crowd["fair"] = [_fair(1.5, 10)]
    measured.crowd["spray"] = [_spray(104)]
    assert print_results(measured, markdown=True) == 0
    out = capsys.readouterr().out
    burst_line = "| burst-8 | 1 | 200: 1 | 400.0 | 400.0 | 0.40 | bcrypt alone: 0.25 s for 8 checks"
    assert f"{burst_line}; limit 0.62 s |" in out
    assert "| fair: logins | 1 | 200: 1 |" in out
    assert "bcrypt checks: 30.0/s, 0.94 of bcrypt alone" in out
    assert "bcrypt checks 104; bound 100 + 1/s × 5.0 s = 105.0" in out
    assert "- PASS  spray: bcrypt checks spent: 104.00 (target ≤ 105)" in out


def test_cpu_seconds_are_read_from_proc_stat_whatever_the_process_name():
    ticks = common.CLOCK_TICKS
    # pid (comm) state, then fields 4..13, utime (14) and stime (15), and more
    stat = f"4242 (uwsgi (worker 1)) S 1 2 3 4 5 6 7 8 9 10 {3 * ticks} {ticks} 0 0 20 0 81"
    assert common.cpu_seconds_of_stat(stat) == pytest.approx(4.0)
    with open("/proc/self/stat") as own:
        assert common.cpu_seconds_of_stat(own.read()) > 0


def test_proxy_rows_are_selected_by_name_and_by_group():
    from benchmarks import proxy

    assert expand_only(["proxy"]) == set(proxy.PROXY_ROWS)
    assert expand_only(["proxy-pull"]) == {"proxy-pull"}


def test_proxy_report_and_targets():
    from benchmarks import proxy

    result = wrk.Result(requests=1000, seconds=1.0, p50_ms=1.0, p99_ms=4.0)
    measured = proxy.ProxyMeasured(
        pulls={"token": [0.100, 0.110, 0.090], "proxy": [0.115, 0.120, 0.118]},
        runs={proxy.DECISION_ROW: [result], "token-v2": [result]},
    )
    lines, targets = proxy.report(measured)
    assert any("proxy mode 118.0 ms (1.18x)" in line for line in lines)
    by_what = {target.what: target for target in targets}
    pull = by_what["proxy-pull: proxy / token mode"]
    assert pull.passed and pull.value == pytest.approx(1.18)
    decision = by_what["proxy-decision: p99 ms at 16 connections"]
    assert decision.passed and decision.value == 4.0
    assert proxy.PROXY_STACK.auth_mode == "proxy" and proxy.TOKEN_STACK.auth_mode == "token"


def test_proxy_report_compares_the_decision_with_its_ceiling(tmp_path, monkeypatch):
    import importlib
    import sys

    from benchmarks import proxy
    from benchmarks.scenarios import BASE, write_config

    decision = wrk.Result(requests=5000, seconds=1.0, p50_ms=2.0, p99_ms=15.0)
    ceiling = wrk.Result(requests=8000, seconds=1.0, p50_ms=1.5, p99_ms=20.0)
    measured = proxy.ProxyMeasured(
        pulls={}, runs={proxy.DECISION_ROW: [decision], proxy.DECISION_CEILING_ROW: [ceiling]}
    )
    lines, targets = proxy.report(measured)
    assert "proxy-decision / proxy-decision-ceiling: throughput 0.62x, p99 0.75x" in lines
    (ratio,) = [t for t in targets if t.what == "proxy-decision: p99 / proxy-decision-ceiling's"]
    assert ratio.passed and ratio.value == pytest.approx(0.75) and ratio.limit == 1.2
    # The ceiling is the proxy-mode stack serving benchmarks/ceiling.py, which answers decisions.
    assert proxy.PROXY_CEILING_STACK.ceiling and proxy.PROXY_CEILING_STACK.auth_mode == "proxy"
    # benchmarks/ceiling.py reads its config directory when imported, as uWSGI imports it.
    monkeypatch.setenv("AUTH_SERVICE_CONFIG_DIR", str(write_config(tmp_path, BASE, "x")))
    monkeypatch.delitem(sys.modules, "benchmarks.ceiling", raising=False)
    app = importlib.import_module("benchmarks.ceiling").app

    answer = app.test_client().get("/auth/proxy")
    assert answer.status_code == 200
    assert answer.headers["X-Registry-Authorization"].startswith("Bearer ")

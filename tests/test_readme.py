"""The README is the operator's manual: what it says must be true of the code.

- Its shell commands run, in the README's order, in one temporary directory laid out like a
  fresh checkout (``config/`` holding only the ``*.example`` files), with
  ``AUTH_SERVICE_CONFIG_DIR`` set and the venv's ``bin`` on ``PATH``: an operator following the
  manual top to bottom. Only commands that need a container engine, a cluster, root or the whole
  stack are not run (:data:`NOT_RUN_OFFLINE`, a short list), and ``auth-service dev`` is started
  as the server it is, for the ``curl`` that follows it.
- Its tables are the code's: the settings of ``config.py`` (names, environment variables,
  ranges, defaults), the keys of each JSON file, the refusals, the audit line's fields and the
  metrics; and its examples' output is what the commands print.
- Every ``auth-service`` command and option it names exists, every module it names is there, and
  every link inside it leads to a heading.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import click
import pytest

from auth_service.cli.main import cli
from auth_service.errors import REFUSALS, RetryAfter
from auth_service.files import anonymous, groups, settings, users
from auth_service.files.revocations import Revocations
from auth_service.records.audit import token_line
from auth_service.stack.main import REPO, free_port

README = REPO / "README.md"
BENCHMARKS_README = REPO / "benchmarks" / "README.md"
VENV_BIN = Path(sys.executable).parent

# The README's shell commands that this test does not run, by how they begin, and why. Keep it
# short: every other command must run here.
NOT_RUN_OFFLINE = {
    "python3 -m auth_service.stack ": "installs Debian packages, runs the whole stack or the tests",
    "docker ": "needs a Docker engine",
    "kubectl ": "needs a Kubernetes cluster",
    "sudo ": "needs root, and a user the machine may not have",
}
# Commands that serve until stopped: started, waited for, and stopped when the journey ends.
SERVERS = ("auth-service dev",)
# What the README's commands take from the operator's environment.
CI_PASSWORD = "readme-ci-password"
# Typed at every hidden prompt (a new password, then its confirmation).
TYPED = "readme-typed-password\n" * 4
# The port `auth-service dev` is shown on; the journey uses a free one in its place.
DEV_PORT = "5001"
# Names the README may show in capitals that are not settings, each found in the project's files.
PROJECT_FILES = (
    *sorted((REPO / "auth_service").rglob("*.py")),
    *sorted((REPO / "nginx").iterdir()),
    REPO / "docker-compose.yml",
    REPO / "Dockerfile",
    REPO / "uwsgi.ini",
)


def readme() -> str:
    return README.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Block:
    language: str
    text: str
    line: int  # of the opening fence


def fenced_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, indented ones (in lists) included."""
    blocks = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opening = re.match(r"^(\s*)```(\S*)\s*$", lines[index])
        if not opening:
            index += 1
            continue
        indent, language, start = opening.group(1), opening.group(2), index
        body = []
        index += 1
        while not re.match(rf"^{indent}```\s*$", lines[index]):
            body.append(lines[index][len(indent) :])
            index += 1
        blocks.append(Block(language, "\n".join(body), start + 1))
        index += 1
    return blocks


def without_blocks(text: str) -> str:
    """The text with its fenced blocks left out: the prose, its tables and inline code."""
    return re.sub(r"(?ms)^\s*```.*?^\s*```\s*$", "", text)


@dataclass(frozen=True)
class Command:
    text: str
    line: int

    def not_run_because(self) -> str | None:
        for prefix, why in NOT_RUN_OFFLINE.items():
            if self.text.startswith(prefix):
                return why
        return None


def shell_commands(text: str) -> list[Command]:
    """Each command of the ``sh`` blocks, in order: continuation lines joined, comments left out."""
    commands = []
    for block in fenced_blocks(text):
        if block.language != "sh":
            continue
        pending, first = "", 0
        for offset, line in enumerate(block.text.splitlines(), start=block.line + 1):
            if not pending and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if not pending:
                first = offset
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            commands.append(Command(re.sub(r"\s+", " ", (pending + line).strip()), first))
            pending = ""
    return commands


def section(text: str, heading: str) -> str:
    """The text under ``heading`` (a whole heading line), up to the next heading of its level or
    above."""
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(heading + "\n") + len(heading) + 1
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, start)
    return text[start : end.start() if end else len(text)]


def tables(text: str) -> list[list[list[str]]]:
    """The Markdown tables of ``text``: rows of cells, the header row first, the rule left out."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
            if not all(re.fullmatch(r"-+", cell) for cell in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


# --- the commands ---------------------------------------------------------------------------


def test_the_first_two_commands_are_the_stack_and_the_tests():
    """CI runs the second verbatim (.ci/run); the first is what a newcomer types."""
    first, second = shell_commands(readme())[:2]
    assert first.text == "python3 -m auth_service.stack up"
    assert second.text == "python3 -m auth_service.stack test"
    assert "python3 -m auth_service.stack test\n" in (REPO / ".ci" / "run").read_text()


def test_only_a_few_kinds_of_command_are_not_run():
    assert len(NOT_RUN_OFFLINE) <= 5
    commands = shell_commands(readme())
    skipped = [c for c in commands if c.not_run_because()]
    for command in skipped:
        assert command.text.split()[0] in {"python3", "docker", "kubectl", "sudo"}, command
    # Most of the manual runs here: the skipped are the few that need a daemon, a cluster or root.
    assert len(skipped) * 2 < len(commands), [c.text for c in skipped]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A directory like a fresh checkout's top: ``config/`` with only the example files."""
    (tmp_path / "config").mkdir()
    for example in sorted((REPO / "config").glob("*.example")):
        shutil.copy(example, tmp_path / "config" / example.name)
    return tmp_path


def operator_environment(checkout: Path) -> dict[str, str]:
    """The environment the README's commands run in: the operator's, with this config directory
    and this venv, and none of the settings the shell running the tests may have."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("AUTH_")}
    return {
        **environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{environ.get('PATH', '')}",
        "AUTH_SERVICE_CONFIG_DIR": str(checkout / "config"),
        "CI_PASSWORD": CI_PASSWORD,
    }


def wait_for_health(port: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"auth-service dev exited {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"auth-service dev did not answer within 60 s:\n{log.read_text()}")


@pytest.fixture
def servers() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for server in started:  # each in a session of its own: stop it and whatever it started
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def test_every_offline_shell_command_of_the_readme_runs_in_order(checkout, servers):
    environment = operator_environment(checkout)
    port = str(free_port())
    ran = []
    for command in shell_commands(readme()):
        if command.not_run_because():
            continue
        text = command.text.replace(f"--port {DEV_PORT}", f"--port {port}")
        text = text.replace(f"127.0.0.1:{DEV_PORT}", f"127.0.0.1:{port}")
        where = f"README.md line {command.line}: {command.text}"
        if text.startswith(SERVERS):
            log = checkout / f"server-{len(servers)}.log"
            with open(log, "wb") as output:
                servers.append(
                    subprocess.Popen(
                        ["bash", "-c", text],
                        cwd=checkout,
                        env=environment,
                        stdin=subprocess.DEVNULL,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            wait_for_health(port, servers[-1], log)
            ran.append(command)
            continue
        # No terminal (a session of its own): hidden prompts read what is "typed" on stdin.
        result = subprocess.run(
            ["bash", "-c", "set -o pipefail\n" + text],
            cwd=checkout,
            env=environment,
            input=TYPED,
            capture_output=True,
            text=True,
            timeout=120,
            start_new_session=True,
        )
        assert result.returncode == 0, (
            f"{where}\nexited {result.returncode}\n{result.stdout}{result.stderr}"
        )
        ran.append(command)
    assert len(ran) >= 25, [c.text for c in ran]
    # What the journey did is there: the user for kubelet, and carol come and gone.
    final = json.loads((checkout / "config" / "users.json").read_text())
    assert final["ci"].get("refresh_tokens") is False
    assert "carol" not in final


# --- the settings and the files ---------------------------------------------------------------


def settings_table() -> list[list[str]]:
    (table,) = [t for t in tables(section(readme(), "### `config.py`")) if t[0][0] == "setting"]
    assert table[0] == ["setting", "environment", "values", "default", "meaning"]
    return table[1:]


def test_the_settings_table_lists_exactly_the_settings_and_each_once():
    names = [code_spans(row[0])[0] for row in settings_table()]
    assert len(names) == len(set(names)), "a setting is listed twice"
    assert set(names) == set(settings._FIELDS)
    for row in settings_table():
        (name,) = code_spans(row[0])
        assert code_spans(row[1]) == [settings.ENV_PREFIX + name], row


def test_the_settings_tables_defaults_and_ranges_are_the_codes():
    for row in settings_table():
        name, values, default = code_spans(row[0])[0], row[2], row[3]
        parse, code_default = settings._FIELDS[name]
        if code_default is ...:
            assert default == "required", row
        elif code_default in (None, ()):
            assert default.startswith("unset"), row
        else:
            assert ast.literal_eval(code_spans(default)[0]) == code_default, row
        bounds = re.fullmatch(r"(\d+) to (\d+)", values)
        if bounds:
            low, high = int(bounds.group(1)), int(bounds.group(2))
            assert parse(low) == low and parse(high) == high, row
            for outside in (low - 1, high + 1):
                with pytest.raises(ValueError):
                    parse(outside)


def test_the_legacy_names_are_mentioned_as_ignored():
    text = section(readme(), "### `config.py`")
    for name in settings.LEGACY_IGNORED:
        assert f"`{name}`" in text
    assert "ignored" in text


def test_every_environment_variable_named_is_one_the_code_reads():
    known = {settings.ENV_PREFIX + name for name in settings._FIELDS} | {settings.CONFIG_DIR_ENV}
    code = "\n".join(path.read_text(errors="replace") for path in PROJECT_FILES)
    for name in set(re.findall(r"\bAUTH_SERVICE_[A-Z0-9_]*[A-Z0-9]\b", readme())):
        assert name in known or f'"{name}"' in code or f"{name}=" in code, name


def test_every_capitalised_name_is_a_setting_or_in_the_project():
    """A setting the code dropped, or a name misspelt, is a name found nowhere."""
    code = "\n".join(path.read_text(errors="replace") for path in PROJECT_FILES)
    names = set(re.findall(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|[A-Z]{3,})\b", readme()))
    assert len(names) > 40
    known = set(settings._FIELDS) | set(settings.LEGACY_IGNORED)
    for name in sorted(names):
        if name.startswith("REGISTRY_AUTH_"):  # the registry's own settings, in its environment
            continue
        assert name.removeprefix(settings.ENV_PREFIX) in known or name in code, name


def key_table(heading: str) -> set[str]:
    (table,) = [t for t in tables(section(readme(), heading)) if t[0][0] == "key"]
    return {code_spans(row[0])[0] for row in table[1:]}


def test_each_json_files_table_lists_exactly_its_keys():
    assert key_table("### `users.json`") == users._USER_KEYS
    assert key_table("### `groups.json`") == groups._GROUP_KEYS
    assert key_table("### `repositories.json`") == anonymous._KEYS - {"backlist"}
    assert "`backlist`" in section(readme(), "### `repositories.json`")
    assert key_table("### `revocations.json`") == set(Revocations().document())


def test_the_config_directory_table_names_the_five_files():
    (table,) = tables(section(readme(), "### The config directory"))
    files = {code_spans(row[0])[0] for row in table[1:]}
    assert {
        settings.CONFIG_FILE,
        settings.USERS_FILE,
        settings.GROUPS_FILE,
        settings.REPOSITORIES_FILE,
        settings.REVOCATIONS_FILE,
    } <= files
    assert "configured by five files" in re.sub(r"\s+", " ", readme())


def test_the_json_and_python_examples_parse():
    for block in fenced_blocks(readme()):
        if block.language == "json":
            json.loads(block.text)
        if block.language == "python":
            names = set(re.findall(r"(?m)^([A-Z_]+) =", block.text))
            assert names <= set(settings._FIELDS), block


# --- the examples' output ----------------------------------------------------------------------


def console_examples(heading: str) -> list[tuple[str, list[str]]]:
    """(command, output lines) of each ``console`` block under ``heading``."""
    examples = []
    for block in fenced_blocks(section(readme(), heading)):
        if block.language == "console":
            first, *output = block.text.splitlines()
            assert first.startswith("$ ")
            examples.append((first[2:], output))
    return examples


def run_auth_service(
    arguments: str, checkout: Path, **environment: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", arguments],
        cwd=checkout,
        env={**operator_environment(checkout), **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


def team_example(checkout: Path) -> Path:
    """The small team of the README: its groups.json, users.json (with hashes that parse) and
    repositories.json, beside a key and certificate of ``auth-service init``."""
    config = checkout / "config"
    assert run_auth_service("auth-service init", checkout).returncode == 0
    text = section(readme(), "### Access rules: patterns and which key decides")
    blocks = [b.text for b in fenced_blocks(text) if b.language == "json"]
    group_file, user_file, repositories_file = blocks
    a_hash = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    (config / "groups.json").write_text(group_file)
    (config / "users.json").write_text(re.sub(r'"\$2b\$12\$…"', json.dumps(a_hash), user_file))
    (config / "repositories.json").write_text(repositories_file)
    return config


def test_the_small_team_table_is_what_explain_says(checkout):
    team_example(checkout)
    (table,) = tables(section(readme(), "### Access rules: patterns and which key decides"))[1:]
    assert table[0] == ["who", "repository", "granted", "because"]
    for who, repository, granted, _ in table[1:]:
        if repository == "catalog":
            scope, expected = "registry:catalog:*", set() if granted == "no" else {"*"}
        else:
            (name,) = code_spans(repository)
            scope = f"repository:{name}:pull,push,delete"
            expected = set() if granted == "nothing" else set(granted.split(", "))
        result = run_auth_service(f"auth-service explain --json {who} '{scope}'", checkout)
        assert result.returncode == 0, result.stderr
        (decision,) = json.loads(result.stdout)
        assert set(decision["actions"]) == expected, (who, repository, decision)


def test_the_explain_example_prints_what_the_readme_shows(checkout):
    team_example(checkout)
    ((command, output),) = console_examples("### Access rules: patterns and which key decides")
    result = run_auth_service(command, checkout)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == output


def test_the_config_check_example_prints_what_the_readme_shows(checkout):
    """Its case: an expired certificate, a user at cost 8 and one at cost 15 beside admin's 12."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    config = checkout / "config"
    assert run_auth_service("auth-service init", checkout).returncode == 0
    key = serialization.load_pem_private_key((config / "token.key").read_bytes(), None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registry-token-service")])
    expired = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        .sign(key, hashes.SHA256())
    )
    (config / "token.crt").write_bytes(expired.public_bytes(serialization.Encoding.PEM))
    document = json.loads((config / "users.json").read_text())
    # config check reads the costs; it checks no password, so the hashes need only parse.
    document["bob"] = {"pass_hash": "$2b$08$" + "a" * 53}
    document["ci"] = {"pass_hash": "$2b$15$" + "a" * 53}
    (config / "users.json").write_text(json.dumps(document))

    ((command, output),) = console_examples("### Checking the configuration")
    # The config directory as an operator at the checkout's top names it: config/...
    result = run_auth_service(command, checkout, AUTH_SERVICE_CONFIG_DIR="config")
    assert result.returncode == 1
    printed = result.stdout.splitlines() + result.stderr.splitlines()
    assert printed == output


# --- the tables the code defines -------------------------------------------------------------


def test_the_refusals_table_is_errors_py():
    (table,) = tables(section(readme(), "### Refusals"))
    rows = []
    for status, code, _, metric, audit, retry_after in table[1:]:
        rows.append(
            (
                int(status),
                code_spans(code)[0],
                code_spans(metric)[0] if metric != "none" else None,
                code_spans(audit)[0] if audit != "none" else None,
                retry_after,
            )
        )
    shown = {
        RetryAfter.NOT_SENT: "no",
        RetryAfter.ONE_SECOND: "1",
        RetryAfter.THE_EXCEPTIONS: "the seconds until a check is allowed",
    }
    assert rows == [
        (r.status, r.code, r.metric_outcome, r.audit_outcome, shown[r.retry_after])
        for r in REFUSALS
    ]


def test_the_audit_fields_table_is_what_a_line_holds():
    class Request:
        method, grant_type, client, client_id, scopes = "GET", "basic", "::1", "docker", ()

    line = token_line(
        Request(), "issued", 200, 0.001, user="u", service="s", token_id="j", reason="r"
    )
    # Proxy mode's decisions add their own fields to the same line.
    source = (REPO / "auth_service" / "http" / "proxy_decision.py").read_text()
    proxy_fields = set(re.findall(r'line\["(\w+)"\] =', source)) - set(line)
    (table,) = [t for t in tables(section(readme(), "#### The audit log")) if t[0][0] == "field"]
    fields = {name for row in table[1:] for name in code_spans(row[0])}
    assert fields == set(line) | proxy_fields
    outcomes = {r.audit_outcome for r in REFUSALS if r.audit_outcome} | {"issued"}
    (outcome_row,) = [row for row in table if row[0] == "`outcome`"]
    assert set(code_spans(outcome_row[1])) == outcomes


def test_the_metrics_table_names_every_metric():
    source = (REPO / "auth_service" / "records" / "metrics.py").read_text()
    counters = re.findall(r'Counter\(\s*"(auth_\w+)"', source)
    histograms = re.findall(r'Histogram\(\s*"(auth_\w+)"', source)
    gauges = re.findall(r'Gauge\(\s*"(auth_\w+)"', source)
    (table,) = tables(section(readme(), "### Metrics"))
    shown = {re.sub(r"\{.*\}", "", code_spans(row[0])[0]) for row in table[1:]}
    assert shown == {f"{name}_total" for name in counters} | set(histograms) | set(gauges)


# --- names: commands, options, modules, links ------------------------------------------------


def auth_service_invocations(text: str) -> Iterator[list[str]]:
    """The words of every ``auth-service ...`` the README shows, inline or in a block."""
    spans = [re.sub(r"\s+", " ", s) for s in re.findall(r"`([^`]+)`", without_blocks(text))]
    spans += [c.text for c in shell_commands(text)]
    spans += [
        line[2:]
        for block in fenced_blocks(text)
        if block.language == "console"
        for line in block.text.splitlines()
        if line.startswith("$ ")
    ]
    for span in spans:
        for found in re.finditer(r"(?:^|[|;&] |\s)auth-service((?: [^|;&#]+)?)", " " + span):
            yield found.group(1).split()


def test_every_auth_service_command_and_option_shown_exists():
    checked = 0
    for words in auth_service_invocations(readme()):
        command: click.Command = cli
        options = {"--config-dir", "--version", "--help"}
        words = list(words)
        while words and words[0] == "--config-dir":
            words = words[2:]
        while words and isinstance(command, click.Group) and words[0] in command.commands:
            command = command.commands[words.pop(0)]
        names = {name for p in command.params for name in p.opts + p.secondary_opts}
        for word in words:
            for option in re.findall(r"--[a-z][a-z-]*", word):
                assert option in names | options, (command.name, option, words)
        checked += 1
    assert checked > 50


def test_every_module_path_shown_exists():
    text = readme()
    for path in set(re.findall(r"\bauth_service/[\w/]+\.py\b", text)):
        assert (REPO / path).is_file(), path
    for module in set(re.findall(r"python3? -m (auth_service[\w.]*)", text)):
        assert (REPO / (module.replace(".", "/") + ".py")).is_file() or (
            REPO / module.replace(".", "/") / "__main__.py"
        ).is_file(), module


def test_the_layout_names_every_room_and_module():
    layout = section(readme(), "### Layout")
    package = REPO / "auth_service"
    for path in sorted(package.rglob("*.py")):
        if path.name == "__init__.py" or "__pycache__" in path.parts:
            continue
        relative = path.relative_to(package)
        if len(relative.parts) == 1:
            assert f"`auth_service/{path.name}`" in layout, path
            continue
        room = relative.parts[0]
        (row,) = [line for line in layout.splitlines() if line.startswith(f"| `{room}/` |")]
        assert f"`{path.stem}`" in row, path


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub makes of a Markdown text's headings."""
    anchors: set[str] = set()
    for heading in re.findall(r"(?m)^#+ (.+)$", without_blocks(text)):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchor, suffix = slug, 1
        while anchor in anchors:
            anchor, suffix = f"{slug}-{suffix}", suffix + 1
        anchors.add(anchor)
    return anchors


def test_every_link_leads_somewhere():
    documents = {README: readme(), BENCHMARKS_README: BENCHMARKS_README.read_text()}
    for path, text in documents.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", without_blocks(text)):
            if target.startswith("http"):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part) if file_part else path
            assert linked.exists(), (path.name, target)
            if anchor:
                assert anchor in heading_anchors(linked.read_text()), (path.name, target)


def test_the_benchmarks_readme_shows_only_options_the_command_has():
    text = section(BENCHMARKS_README.read_text(), "## Running it")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for option in set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)):
        assert option in result.stdout, option
    assert "benchmarks/README.md" in readme()


def test_the_benchmarks_readme_lists_every_row_and_group():
    from benchmarks import proxy
    from benchmarks.crowd import CROWD_ROWS
    from benchmarks.run import ALIASES, expand_only
    from benchmarks.scenarios import SCENARIOS

    (table,) = tables(section(BENCHMARKS_README.read_text(), "## Running it"))
    (only,) = [row[1] for row in table if row[0] == "`--only NAME,...`"]
    names = code_spans(only)
    rows = {s.name for s in SCENARIOS} | {r.name for r in CROWD_ROWS} | set(proxy.PROXY_ROWS)
    assert set(names) == rows | set(ALIASES)
    for alias, members in ALIASES.items():
        assert f"`{alias}` ({', '.join(members)})" in re.sub(r"\s+", " ", only), alias
    assert expand_only(names) == rows

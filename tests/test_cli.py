"""The README's commands, run as a user runs them: separate processes, their own NATS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from compute.messaging.server import free_port


def run_cli(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "compute.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_demo_boots_and_drives_instances_then_audit_matches_the_views(tmp_path: Path) -> None:
    env = {**os.environ, "COMPUTE_NATS_URL": f"nats://127.0.0.1:{free_port()}",
           "COMPUTE_HOST": "demo", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    demo = run_cli(tmp_path, "demo", env=env)
    assert demo.returncode == 0, demo.stderr
    assert "starting nats-server" in demo.stderr        # it brought its own NATS
    lines = demo.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["UUID", "NAME", "STATUS", "VM_STATE"]
    statuses = sorted(line.split()[2] for line in lines[1:])
    assert statuses == ["ACTIVE", "PAUSED", "SHUTOFF"]

    audit = run_cli(tmp_path, "--json", "audit", env=env)
    assert audit.returncode == 0, audit.stderr
    report = json.loads(audit.stdout)["report"]
    assert report["equal"] is True
    assert report["events_replayed"] > 0


def test_the_demo_can_run_again_in_the_same_place(tmp_path: Path) -> None:
    """Its instances are terminated at the end: the host has room for the next demo."""
    env = {**os.environ, "COMPUTE_NATS_URL": f"nats://127.0.0.1:{free_port()}",
           "COMPUTE_HOST": "again", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for _ in range(2):
        demo = run_cli(tmp_path, "demo", env=env)
        assert demo.returncode == 0, demo.stderr
        assert len(demo.stdout.strip().splitlines()) == 4      # its own three instances


async def cli(settings, *args: str, env: dict[str, str] | None = None
              ) -> tuple[int, str, str]:
    """Run the CLI against the in-process host without blocking its event loop."""
    import asyncio

    env = {**os.environ, "COMPUTE_NATS_URL": settings.nats_url, "COMPUTE_HOST": settings.host,
           "COMPUTE_STORE": settings.store, "COMPUTE_VIEWS": settings.views,
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "compute.cli", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def test_cli_verbs_drive_an_instance_and_fail_loudly_on_a_wrong_state(
        service, operator_settings) -> None:
    code, out, err = await cli(operator_settings, "--json", "boot", "web1", "--flavor", "m1.small")
    assert code == 0, err
    vm = json.loads(out)["uuid"]
    code, out, _ = await cli(operator_settings, "reboot", vm, "--hard")
    assert code == 0 and "Rebooted" in out
    code, out, _ = await cli(operator_settings, "unpause", vm)
    assert code == 1 and "InstanceInvalidState" in out
    code, out, _ = await cli(operator_settings, "show", vm)
    assert code == 0 and "web1" in out and "reboot" in out
    code, out, _ = await cli(operator_settings, "--json", "list")
    assert [row["uuid"] for row in json.loads(out)] == [vm]


async def test_cli_events_lists_an_instances_events_in_order(service, operator_settings) -> None:
    code, out, _ = await cli(operator_settings, "--json", "boot", "db1")
    vm = json.loads(out)["uuid"]
    await cli(operator_settings, "stop", vm)
    code, out, err = await cli(operator_settings, "--json", "events", "--uuid", vm)
    assert code == 0, err
    names = [json.loads(line)["event"] for line in out.splitlines()]
    assert names[0] == "Created" and names[-1] == "PoweredOff"


async def test_cli_verbs_cover_the_new_operations_and_calls(service, operator_settings) -> None:
    code, out, _ = await cli(operator_settings, "--json", "boot", "app1")
    vm = json.loads(out)["uuid"]
    code, out, err = await cli(operator_settings, "rebuild", vm, "--image-ref", "debian-13")
    assert code == 0 and "Rebuilt" in out, err
    code, out, _ = await cli(operator_settings, "backup", vm, "--name", "nightly", "--backup-type",
                             "daily", "--rotation", "2")
    assert code == 0 and "Snapshotted" in out
    code, out, _ = await cli(operator_settings, "metadata", vm, "--metadata", '{"tier": "web"}')
    assert code == 0 and "MetadataChanged" in out
    code, out, _ = await cli(operator_settings, "--json", "console", vm)
    assert code == 0 and json.loads(out)["port"] > 0
    code, out, _ = await cli(operator_settings, "--json", "diagnostics", vm)
    assert code == 0 and json.loads(out)["state"] == "running"
    code, out, _ = await cli(operator_settings, "rescue", vm)
    assert code == 0 and "Rescued" in out


def test_json_logs_carry_the_instance_and_the_command(tmp_path: Path) -> None:
    env = {**os.environ, "COMPUTE_NATS_URL": f"nats://127.0.0.1:{free_port()}",
           "COMPUTE_HOST": "logs", "COMPUTE_LOG_JSON": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    demo = run_cli(tmp_path, "demo", "--count", "1", env=env)
    assert demo.returncode == 0, demo.stderr
    lines = [json.loads(line) for line in demo.stderr.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "message", "uuid", "command_id"} <= set(line)
                         for line in lines)


# -- a person's mistakes and an unreachable service: one line, an exit code, no traceback ---
REPO = Path(__file__).resolve().parents[1]
VM = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


def cli_env(settings=None, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra}
    if settings is not None:
        env.update({"COMPUTE_NATS_URL": settings.nats_url, "COMPUTE_HOST": settings.host,
                    "COMPUTE_STORE": settings.store, "COMPUTE_VIEWS": settings.views})
    return env


def one_clean_line(err: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if not line.startswith("compute: [")]
    assert len(lines) == 1 and lines[0].startswith("compute: "), err


def test_every_verb_fails_within_seconds_when_nats_is_down(tmp_path: Path) -> None:
    import time

    env = cli_env(COMPUTE_NATS_URL=f"nats://127.0.0.1:{free_port()}")
    for verb in (["list"], ["show", VM], ["hosts"], ["reboot", VM, "--hard"],
                 ["boot", "web"], ["events", "--follow"], ["host", "get_host_uptime"],
                 ["console", VM]):
        started = time.monotonic()
        run = run_cli(tmp_path, *verb, env=env)
        assert time.monotonic() - started < 15, verb
        assert run.returncode == 3, (verb, run.stderr)
        one_clean_line(run.stderr)
        assert "cannot reach NATS at nats://127.0.0.1:" in run.stderr
        assert "compute up" in run.stderr                      # what to do


def test_json_after_the_verb_and_failures_as_a_json_object(tmp_path: Path) -> None:
    env = cli_env(COMPUTE_NATS_URL=f"nats://127.0.0.1:{free_port()}")
    for args in (["list", "--json"], ["--json", "list"], ["show", VM, "--json"]):
        run = run_cli(tmp_path, *args, env=env)
        error = json.loads(run.stdout)
        assert (run.returncode, error["error"], error["exit_code"]) == (
            3, "NatsUnreachable", 3), args
    usage = run_cli(tmp_path, "reboot", "--json", env=env)          # no uuid
    assert usage.returncode == 2 and json.loads(usage.stdout)["error"] == "Usage"


def test_audit_refuses_a_bad_time_or_uuid_in_one_line(tmp_path: Path) -> None:
    env = cli_env()
    for args in (["audit", VM, "--at", "yesterday"], ["audit", "not-a-uuid"],
                 ["audit", "--at", "2026-01-01T00:00:00Z"]):
        run = run_cli(tmp_path, *args, env=env)
        assert run.returncode == 2, (args, run.stderr)
        one_clean_line(run.stderr)


def test_per_verb_help_describes_each_payload_field(tmp_path: Path) -> None:
    run = run_cli(tmp_path, "snapshot", "--help", env=cli_env())
    assert run.returncode == 0
    text = " ".join(run.stdout.split())
    assert ("--image-type IMAGE_TYPE snapshot, or backup (rotated); one of backup, snapshot; "
            "default \"snapshot\"") in text
    assert "--rotation ROTATION How many backups of this type to keep" in text
    assert "integer 0..1000 or null; default null" in text
    assert "--name NAME The image's name; text (at most 255 characters, no control characters); required" in text


async def test_audit_of_an_unknown_instance_exits_not_found(service, operator_settings) -> None:
    code, out, err = await cli(operator_settings, "audit", VM)
    assert code == 4 and "no events of instance" in err, err
    one_clean_line(err)
    code, out, err = await cli(operator_settings, "audit", VM, "--at", "2026-01-01T00:00:00")
    assert code == 4, err
    one_clean_line(err)


async def test_an_unknown_host_is_named_with_the_known_ones(service, operator_settings) -> None:
    for args in (["--host", "nowhere", "reboot", VM], ["--host", "nowhere", "console", VM],
                 ["--host", "nowhere", "host", "get_host_uptime"]):
        code, out, err = await cli(operator_settings, *args)
        assert code == 4, (args, err)
        one_clean_line(err)
        assert "no compute host named 'nowhere'" in err and service.host in err


async def test_show_and_list_into_a_closed_pipe_exit_quietly(service, operator_settings,
                                                             client) -> None:
    """``compute show <uuid> | head``: the reader went away; no traceback, exit 141."""
    import asyncio

    from tests.conftest import boot_payload

    vm = str(__import__("uuid").uuid4())
    done = await client.send(service.host, vm, "run_instance", boot_payload("piped"))
    await client.query("instance", vm, min_position=done.position)
    for args in (["show", vm], ["list"], ["--json", "events", "--uuid", vm]):
        read, write = os.pipe()
        os.close(read)                            # nobody will read: every write fails
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "compute.cli", *args, env=cli_env(operator_settings),
            stdout=write, stderr=asyncio.subprocess.PIPE)
        os.close(write)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 141, (args, err.decode())
        assert err.decode() == "", err.decode()


async def test_an_unknown_instance_is_not_found_for_show(service, operator_settings) -> None:
    code, out, err = await cli(operator_settings, "show", VM)
    assert code == 4 and "could not be found" in err
    one_clean_line(err)
    code, out, err = await cli(operator_settings, "show", "nope")
    assert code == 2
    one_clean_line(err)


async def test_a_command_to_a_host_that_does_not_answer_shows_progress_then_gives_up(
        start_host, client, nats_server, tmp_path) -> None:
    """The host is known (it ran before) but down: the command stays queued; the CLI says
    what it waits for, then that it gave up and that the command may still run."""
    from tests.conftest import boot_payload

    answering, gone = await start_host(), await start_host()
    vm = str(__import__("uuid").uuid4())
    await client.send(gone.host, vm, "run_instance", boot_payload("stranded"))
    await gone.stop()
    gone.stop = _noop                             # the fixture's teardown stops it again
    settings = msgspec.structs.replace(answering.settings, host=gone.host,
                                       nats_url=nats_server.url_for("operator"))
    code, out, err = await cli(settings, "--host", gone.host, "pause", vm, "--wait", "4")
    assert code == 5, err
    assert "Traceback" not in err
    assert f"waiting for host {gone.host} to run pause_instance of {vm}" in err
    assert "gave up after 4 s" in err and "may still run" in err


async def _noop() -> None:
    return None


async def test_the_cli_waits_past_the_hosts_own_deadline(settings, nats_server) -> None:
    """A hypervisor call slower than the host's deadline ends as the host's Failed outcome
    (a fault recorded), not as the CLI giving up at the same moment."""
    from compute.actors.host_service import HostService

    settings.faults, settings.driver_timeout = "pause:8", 4.0
    operator = msgspec.structs.replace(settings, nats_url=nats_server.url_for("operator"))
    async with HostService(settings):
        code, out, err = await cli(operator, "--json", "boot", "slow")
        vm = json.loads(out)["uuid"]
        code, out, err = await cli(operator, "--json", "pause", vm,
                                   env={"COMPUTE_DRIVER_TIMEOUT": "4"})
    assert code == 1, err
    outcome = json.loads(out)
    assert outcome["outcome"] == "Failed" and outcome["task_state"] is None, outcome
    assert "Traceback" not in err
    assert "giving up after 34 s" in err and "task_state pausing" in err   # its progress


async def test_events_follow_starts_at_now(service, operator_settings, client) -> None:
    import asyncio
    import uuid

    from tests.conftest import boot_payload

    vm = str(uuid.uuid4())
    await client.send(service.host, vm, "run_instance", boot_payload("old"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "compute.cli", "events", "--follow", "--json", "--uuid", vm,
        env=cli_env(operator_settings), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        started = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert b"from now" in started, started
        await client.send(service.host, vm, "pause_instance")
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        assert first["event"] == "ActionStarted" and first["operation"] == "pause_instance"
    finally:
        proc.kill()
        await proc.wait()


def test_every_verb_takes_json_after_it() -> None:
    import argparse

    from compute.cli import build_parser

    def verbs(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, verb in action.choices.items():
                    found += [(name, verb), *verbs(verb)]
        return found

    every = verbs(build_parser())
    assert len(every) > 40
    for name, verb in every:
        assert any("--json" in a.option_strings for a in verb._actions), name
    args = build_parser().parse_args(["user", "list", "--json"])
    assert args.json is True


# -- a person's slips are usage errors, every wait ends in one line (issue 20) --------------
def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI in this process (no interpreter to start: these cost milliseconds)."""
    from compute.cli import main

    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def nats_down(monkeypatch, tmp_path: Path) -> None:
    """A NATS URL whose port refuses at once, a short connect deadline, files in tmp."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMPUTE_NATS_URL", f"nats://127.0.0.1:{free_port()}")
    monkeypatch.setenv("COMPUTE_CONNECT_DEADLINE", "1")


def test_every_argument_of_every_verb_has_help() -> None:
    import argparse

    from compute.cli import build_parser

    def parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
        found = [parser]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                found += [p for verb in action.choices.values() for p in parsers(verb)]
        return found

    missing = [f"{parser.prog} {action.option_strings or action.dest}"
               for parser in parsers(build_parser()) for action in parser._actions
               if not action.help or action.help == argparse.SUPPRESS]
    assert missing == []


def test_a_wait_of_zero_or_less_is_a_usage_error(capsys, nats_down) -> None:
    for args in (["reboot", VM, "--wait", "0"], ["pause", VM, "--wait", "-5"],
                 ["list", "--wait", "0"], ["console", VM, "--wait", "nan"]):
        code, out, err = run_main(capsys, *args)
        assert code == 2, (args, err)
        one_clean_line(err)
        assert "above 0" in err, err


def test_events_takes_from_start_or_since_not_both(capsys, nats_down) -> None:
    code, out, err = run_main(capsys, "events", "--follow", "--from-start", "--since", "2h")
    assert code == 2, err
    one_clean_line(err)
    assert "--since: not allowed with argument --from-start" in err


def test_a_malformed_field_is_a_usage_error(capsys, nats_down) -> None:
    """Caught before anything is sent: a field that is not KEY=VALUE, a value that does not
    fit its payload field (``--meta`` abbreviates ``--metadata``, an object)."""
    for args, says in ((["host", "set_host_enabled", "foo"], "'foo' is not KEY=VALUE"),
                       (["host", "set_host_enabled", "=true"], "is not KEY=VALUE"),
                       (["metadata", VM, "--meta", "foo"], "Expected `object`, got `str`"),
                       (["snapshot", VM, "--name", "n", "--rotation", "many"], "--rotation")):
        code, out, err = run_main(capsys, *args)
        assert code == 2, (args, err)
        one_clean_line(err)
        assert says in err, err
    code, out, err = run_main(capsys, "--json", "metadata", VM, "--meta", "foo")
    assert (code, json.loads(out)["error"], err) == (2, "Usage", "")


def test_user_add_answers_json_and_its_refusal_too(capsys, nats_down) -> None:
    code, out, err = run_main(capsys, "user", "add", "auditor", "billing", "--json")
    assert code == 0, err
    added = json.loads(out)
    assert (added["user"], added["role"]) == ("billing", "auditor")
    assert Path(added["credentials"]).is_file()
    code, out, err = run_main(capsys, "user", "add", "auditor", "Bad Name", "--json")
    assert (code, json.loads(out)["error"], json.loads(out)["exit_code"]) == (1, "Error", 1)


def test_setup_answers_json(capsys, monkeypatch, nats_server) -> None:
    monkeypatch.setenv("COMPUTE_NATS_URL", nats_server.url_for("admin"))
    code, out, err = run_main(capsys, "setup", "--json")
    assert code == 0, err
    assert {"COMPUTE_COMMANDS", "COMPUTE_EVENTS", "COMPUTE_NOTIFICATIONS"} <= set(
        json.loads(out)["streams"])


def test_queries_with_nats_down_fails_in_one_line_within_the_connect_deadline(
        tmp_path: Path) -> None:
    """The replica connects first (before opening stores and catching up), within the
    deadline every verb has; its connection retries for ever only once it is up."""
    import time

    env = cli_env(COMPUTE_NATS_URL=f"nats://127.0.0.1:{free_port()}",
                  COMPUTE_CONNECT_DEADLINE="0.5")
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "compute.cli", "queries", "--cells", "cell1"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=20)
    assert time.monotonic() - started < 10
    assert run.returncode == 3, run.stderr
    one_clean_line(run.stderr)
    assert "cannot reach NATS" in run.stderr and "within 0.5 s" in run.stderr
    assert not (tmp_path / "var").exists()          # nothing opened before NATS answered


class Silent:
    """What answers on NATS for the test: views that never answer (or say a host is
    known), a host whose calls never answer; ``asked`` is set at the first query."""

    def __init__(self, nc, host: str) -> None:
        import asyncio

        self.nc, self.host, self.asked = nc, host, asyncio.Event()

    async def start(self) -> "Silent":
        async def query(msg) -> None:
            self.asked.set()
            if msg.subject == f"compute.query.host.{self.host}":
                await msg.respond(json.dumps({"host": self.host}).encode())

        await self.nc.subscribe("compute.query.>", queue="compute-query", cb=query)
        async def call(msg) -> None:
            return None

        await self.nc.subscribe(f"compute.call.{self.host}.>", cb=call)
        await self.nc.flush()
        return self


@pytest.fixture
async def silent(settings):
    """A host's NATS user, answering as ``Silent`` says."""
    from compute.messaging.credentials import connect

    nc = await connect(settings.nats_url, f"host-{settings.host}")
    yield await Silent(nc, settings.host).start()
    await nc.close()


async def test_a_query_no_one_answers_names_the_replicas_and_exits_timeout(
        silent, operator_settings) -> None:
    code, out, err = await cli(operator_settings, "list", "--wait", "0.3")
    assert code == 5, err
    one_clean_line(err)
    assert "no query replica answered compute.query.instances" in err, err
    assert "`compute queries`" in err


async def test_a_call_its_host_does_not_answer_names_the_host_and_may_still_run(
        silent, operator_settings) -> None:
    code, out, err = await cli(operator_settings, "--host", silent.host, "host",
                               "get_host_uptime", "--wait", "0.3")
    assert code == 5, err
    one_clean_line(err)
    assert f"host {silent.host} did not answer get_host_uptime" in err, err
    assert "may still run" in err


async def test_ctrl_c_while_waiting_exits_130_in_one_line(silent, operator_settings) -> None:
    import asyncio
    import signal

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "compute.cli", "list", env=cli_env(operator_settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    await asyncio.wait_for(silent.asked.wait(), 30)            # it waits for the answer
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, err.decode()
    one_clean_line(err.decode())
    assert "interrupted" in err.decode()


async def test_ctrl_c_while_a_command_runs_says_it_may_still_run(settings, nats_server,
                                                                  client) -> None:
    import asyncio
    import signal
    import uuid

    from compute.actors.host_service import HostService
    from tests.conftest import boot_payload

    settings.faults = "pause:1.5"          # long enough to be interrupted
    operator = msgspec.structs.replace(settings, nats_url=nats_server.url_for("operator"))
    async with HostService(settings):
        vm = str(uuid.uuid4())
        await client.send(settings.host, vm, "run_instance", boot_payload("interrupted"))
        running = await client.nc.subscribe(f"compute.evt.*.{vm}.ActionStarted")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "compute.cli", "pause", vm, env=cli_env(operator),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await running.next_msg(timeout=30)         # the host runs it: the CLI waits
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 130, err.decode()
    one_clean_line(err.decode())
    assert f"interrupted; pause_instance of {vm}" in err.decode()
    assert f"was sent to host {settings.host} and may still run" in err.decode()


def test_a_field_value_is_read_as_its_field_takes_it() -> None:
    """JSON where it fits the field (a number, an object), the text as given where text
    goes: a password of digits stays text (it went as a number, refused by the host)."""
    from compute.cli import build_parser
    from compute.cli.commands import operation_payload

    parse = build_parser().parse_args
    assert operation_payload(parse(["set-password", VM, "--new-pass", "1234"])) == {
        "new_pass": "1234"}
    assert operation_payload(parse(["metadata", VM, "--metadata", '{"tier": "web"}'])) == {
        "metadata": {"tier": "web"}}
    assert operation_payload(parse(["backup", VM, "--name", "n", "--backup-type", "daily",
                                    "--rotation", "2"]))["rotation"] == 2

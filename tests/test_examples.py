"""The Node.js examples (any language speaks the contract), run as their README says, from
their directory, with the current @nats-io packages: run when node and npm exist."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from compute.actors.host_service import HostService
from compute.config import Settings
from compute.messaging.server import NatsServer
from tests.conftest import boot_payload

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "node"

pytestmark = pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")),
                                reason="node and npm are not installed")


def npm_install(directory: Path) -> None:
    """The locked packages (package-lock.json), installed once."""
    if not all((directory / "node_modules" / package).exists() for package in (
            "@nats-io/jetstream", "@asyncapi/parser", "ajv", "ajv-formats")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=directory,
                       check=True, timeout=300)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    npm_install(EXAMPLES)
    return EXAMPLES


async def node(*args: str, env: dict[str, str], code: int = 0) -> list[dict]:
    proc = await asyncio.create_subprocess_exec(
        "node", *args, cwd=EXAMPLES, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == code, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


async def test_node_publishes_commands_queries_and_follows_events(
        node_modules: Path, service: HostService, operator_settings: Settings) -> None:
    env = {"COMPUTE_NATS_URL": operator_settings.nats_url}
    vm = str(uuid.uuid4())
    [booted] = await node("publish-command.mjs", service.host, vm, "run_instance",
                          json.dumps(boot_payload("from-node")), env=env)
    assert booted["outcome"] == "Succeeded" and booted["vm_state"] == "active"
    [stopped] = await node("publish-command.mjs", service.host, vm, "stop_instance", env=env)
    assert stopped["vm_state"] == "stopped"
    [view] = await node("query.mjs", "instance", vm, str(stopped["position"]), env=env)
    assert view["instance"]["vm_state"] == "stopped"
    events = await node("subscribe-events.mjs", vm, "PoweredOff", env=env)
    assert events[0]["event"] == "Created" and events[-1]["event"] == "PoweredOff"
    [missing] = await node("query.mjs", "instance", str(uuid.uuid4()), env=env, code=1)
    assert (missing["outcome"], missing["error"]) == ("Rejected", "InstanceNotFound")


async def test_node_retries_a_command_as_the_contract_says_and_is_answered(
        node_modules: Path, service: HostService, operator_settings: Settings) -> None:
    """The same command id twice: JetStream drops the second Nats-Msg-Id, the example
    publishes <command_id>:2, the host answers from the log."""
    env = {"COMPUTE_NATS_URL": operator_settings.nats_url,
           "COMPUTE_COMMAND_ID": str(uuid.uuid4())}
    vm = str(uuid.uuid4())
    [first] = await node("publish-command.mjs", service.host, vm, "run_instance",
                         json.dumps(boot_payload("retried")), env=env)
    [again] = await node("publish-command.mjs", service.host, vm, "run_instance",
                         json.dumps(boot_payload("retried")), env=env)
    assert first["duplicate"] is False and again["duplicate"] is True
    assert again["version"] == first["version"]


async def test_node_takes_the_url_list_and_the_credentials_from_the_environment(
        node_modules: Path, service: HostService, nats_server: NatsServer) -> None:
    """No user in the URL: operator, its password from COMPUTE_NATS_CREDENTIALS; the list's
    first URL answers nothing, the client fails over to the second."""
    from compute.messaging.server import free_port

    env = {"COMPUTE_NATS_URL": f"nats://127.0.0.1:{free_port()},{nats_server.url}",
           "COMPUTE_NATS_CREDENTIALS": str(nats_server.credentials)}
    [hosts] = await node("query.mjs", "hosts", env=env)
    assert service.host in {h["host"] for h in hosts}


def test_the_contract_passes_the_asyncapi_parser(node_modules: Path) -> None:
    run = subprocess.run(["node", "check-asyncapi.mjs"], cwd=EXAMPLES, capture_output=True,
                         text=True, timeout=120)
    diagnostics = [json.loads(line) for line in run.stdout.splitlines()]
    assert [d for d in diagnostics if d["severity"] == "error"] == [], run.stderr
    assert run.returncode == 0, run.stderr


async def test_a_client_from_the_document_alone_validates_everything_it_exchanges(
        node_modules: Path, service: HostService, operator_settings: Settings) -> None:
    """probe-contract.mjs knows only asyncapi.yaml: it finds each subject's channel, checks
    each message it sends and receives with ajv (draft 07): a command and its outcome, a
    query at the outcome's position, a host call, $SRV.INFO, an event, a notification."""
    lines = await node("probe-contract.mjs", service.host,
                       env={"COMPUTE_NATS_URL": operator_settings.nats_url})
    assert lines[-1]["ok"] is True
    assert {line["checked"] for line in lines[:-1]} >= {
        "command.run_instance", "outcome.Succeeded", "query.instance",
        "reply.query.instance", "call.get_host_uptime", "reply.HostUptime", "srv.info",
        "reply.SrvInfo", "event.Spawned", "notification"}


async def test_the_probe_refuses_a_message_the_document_does_not_describe(
        node_modules: Path, service: HostService, operator_settings: Settings,
        tmp_path: Path) -> None:
    """Its checks bite: against a document whose uptime reply wants four load averages,
    the host's real reply (three) stops the probe, named."""
    doc = json.loads((ROOT / "asyncapi.yaml").read_text())
    load = doc["components"]["schemas"]["HostUptime"]["properties"]["load_average"]
    load["items"].append({"type": "number"})
    load["minItems"] = load["maxItems"] = 4
    (tmp_path / "asyncapi.yaml").write_text(json.dumps(doc))
    lines = await node("probe-contract.mjs", service.host, str(tmp_path / "asyncapi.yaml"),
                       env={"COMPUTE_NATS_URL": operator_settings.nats_url}, code=1)
    assert "get_host_uptime: fits none of the document's messages" in lines[-1]["error"]

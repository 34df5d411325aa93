"""Issue 18 item 4 for every operation: a resumed command reads the guest's real state first,
or its row says why repeating the hypervisor call is harmless. The predicates run against
libvirt's real test hypervisor."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable

import pytest

from compute.domain.instance_device_events import mac_for
from compute.domain.operations import BACKUP, HARD_REBOOT, OPERATIONS, Operation
from compute.events.commands import Flavor
from compute.events.instance_ref import InstanceRef
from compute.virt.libvirt_driver import LibvirtDriver

ROWS: list[Operation] = [*OPERATIONS.values(), BACKUP, HARD_REBOOT]


@pytest.mark.parametrize("op", ROWS, ids=lambda op: f"{op.name}/{op.cli}")
def test_every_row_says_how_a_resumed_command_avoids_repeating_itself(op: Operation) -> None:
    assert op.resume_rule, f"{op.name}: no reaches, reached_if or repeat_safe"
    ways = [op.reaches is not None, bool(op.reached_if), bool(op.repeat_safe)]
    assert sum(ways) == 1, f"{op.name}: one rule, not {ways}"


@pytest.mark.parametrize("op", [op for op in ROWS if op.reached_if], ids=lambda op: op.name)
def test_every_reached_if_is_a_driver_predicate_fed_by_the_operations_params(
        op: Operation) -> None:
    predicate = getattr(LibvirtDriver, op.reached_if, None)
    assert predicate is not None, f"{op.name}: LibvirtDriver has no {op.reached_if}"
    params = set(inspect.signature(predicate).parameters) - {"self", "ref"}
    driver_params = set(inspect.signature(getattr(LibvirtDriver, op.driver)).parameters)
    assert params <= driver_params, f"{op.reached_if} needs {params - driver_params}"


@pytest.fixture
def driver(hypervisor_uri: Callable[..., str]) -> LibvirtDriver:
    return LibvirtDriver(hypervisor_uri(cpus=8, memory_mb=16384), local_gb=500)


def booted(driver: LibvirtDriver) -> InstanceRef:
    ref = InstanceRef(uuid=str(uuid.uuid4()), name="vm",
                      flavor=Flavor(name="m1.small", vcpus=1, memory_mb=512),
                      image_ref="cirros-0.6.2")
    driver.spawn(ref)
    return ref


def test_suspended_is_true_only_after_the_managed_save(driver: LibvirtDriver) -> None:
    ref = booted(driver)
    assert not driver.suspended(ref)
    driver.power_off(ref)                       # off without a saved memory: not suspended
    assert not driver.suspended(ref)
    driver.power_on(ref)
    driver.suspend(ref)
    assert driver.suspended(ref)


def test_rescued_and_unrescued_tell_which_definition_runs(driver: LibvirtDriver) -> None:
    ref = booted(driver)
    assert (driver.rescued(ref), driver.unrescued(ref)) == (False, True)
    driver.rescue(ref)
    assert (driver.rescued(ref), driver.unrescued(ref)) == (True, False)
    driver.unrescue(ref)
    assert (driver.rescued(ref), driver.unrescued(ref)) == (False, True)


def test_interface_attached_and_detached_follow_the_nic_with_the_ports_mac(
        driver: LibvirtDriver) -> None:
    ref = booted(driver)
    mac = mac_for("port-a")
    assert (driver.interface_attached(ref, mac), driver.interface_detached(ref, mac)) \
        == (False, True)
    driver.attach_interface(ref, "port-a", mac)
    assert driver.interface_attached(ref, mac) and not driver.interface_detached(ref, mac)
    assert not driver.interface_attached(ref, mac_for("port-b"))
    driver.detach_interface(ref, "port-a", mac)
    assert (driver.interface_attached(ref, mac), driver.interface_detached(ref, mac)) \
        == (False, True)

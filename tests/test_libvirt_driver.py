"""The libvirt driver against libvirt's real test hypervisor (a fresh one per test)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from compute.domain.errors import GuestInvalidState, GuestNotFound, HypervisorError
from compute.domain.states import PowerState as P
from compute.events.commands import Flavor
from compute.events.instance_ref import InstanceRef
from compute.virt.libvirt_driver import LibvirtDriver
from compute.virt.typed import BY_CODE, UNSUPPORTED


@pytest.fixture
def driver(hypervisor_uri: Callable[..., str]) -> LibvirtDriver:
    return LibvirtDriver(hypervisor_uri(cpus=8, memory_mb=16384), local_gb=500)


def ref(**metadata: str) -> InstanceRef:
    return InstanceRef(uuid=str(uuid.uuid4()), name="vm",
                       flavor=Flavor(name="m1.small", vcpus=2, memory_mb=2048),
                       image_ref="cirros-0.6.2", metadata=metadata)


def test_spawn_runs_a_domain_described_by_the_instance(driver: LibvirtDriver) -> None:
    r = ref(role="web")
    assert driver.spawn(r) is P.RUNNING
    dom = driver.connect().lookupByUUIDString(r.uuid)
    xml = dom.XMLDesc()
    assert f"<uuid>{r.uuid}</uuid>" in xml and "cirros-0.6.2" in xml and 'key="role"' in xml
    assert dom.info()[1] == 2048 * 1024 and dom.info()[3] == 2


def test_spawn_twice_is_idempotent(driver: LibvirtDriver) -> None:
    r = ref()
    driver.spawn(r)
    assert driver.spawn(r) is P.RUNNING
    assert driver.list_instance_uuids() == [r.uuid]


@pytest.mark.parametrize("steps", [
    [("reboot", {"reboot_type": "SOFT"}, P.RUNNING), ("reboot", {"reboot_type": "HARD"}, P.RUNNING)],
    [("power_off", {}, P.SHUTDOWN), ("power_on", {}, P.RUNNING)],
    [("power_off", {"clean_shutdown": False}, P.SHUTDOWN)],
    [("pause", {}, P.PAUSED), ("unpause", {}, P.RUNNING)],
    [("suspend", {}, P.SHUTDOWN), ("resume", {}, P.RUNNING)],
])
def test_each_operation_reports_the_hypervisors_power_state(driver: LibvirtDriver,
                                                            steps: list) -> None:
    r = ref()
    driver.spawn(r)
    for method, kwargs, power in steps:
        assert getattr(driver, method)(r, **kwargs) is power, method


def test_suspend_keeps_a_managed_save(driver: LibvirtDriver) -> None:
    r = ref()
    driver.spawn(r)
    driver.suspend(r)
    assert driver.connect().lookupByUUIDString(r.uuid).hasManagedSaveImage()


def test_hard_reboot_respawns_a_missing_guest(driver: LibvirtDriver) -> None:
    r = ref()
    assert driver.reboot(r, reboot_type="HARD") is P.RUNNING


def test_destroy_removes_the_domain_and_twice_is_fine(driver: LibvirtDriver) -> None:
    r = ref()
    driver.spawn(r)
    assert driver.destroy(r) is P.NOSTATE
    assert driver.destroy(r) is P.NOSTATE
    assert driver.list_instance_uuids() == []


def test_pausing_a_stopped_guest_is_a_hypervisor_error(driver: LibvirtDriver) -> None:
    r = ref()
    driver.spawn(r)
    driver.power_off(r)
    with pytest.raises(HypervisorError, match="not running") as err:
        driver.pause(r)
    assert err.value.libvirt_code is not None and "Traceback" in err.value.details


def test_suspending_a_stopped_guest_is_a_guest_invalid_state_error(
        driver: LibvirtDriver) -> None:
    r = ref()
    driver.spawn(r)
    driver.power_off(r)
    with pytest.raises(GuestInvalidState, match="not running") as err:
        driver.suspend(r)
    assert err.value.libvirt_code == 55
    assert err.value.code == 500                     # a fault, as Nova records it


def test_an_operation_on_a_missing_guest_is_guest_not_found_with_libvirts_code(
        driver: LibvirtDriver) -> None:
    with pytest.raises(GuestNotFound) as err:
        driver.pause(ref())
    assert err.value.libvirt_code == 42


def test_libvirt_error_codes_map_to_typed_errors() -> None:
    assert {code: cls.__name__ for code, cls in BY_CODE.items()} == {
        8: "HypervisorInvalidArgument", 9: "HypervisorOperationFailed", 42: "GuestNotFound",
        55: "GuestInvalidState", 68: "HypervisorTimeout", 86: "GuestAgentNotResponding"}
    assert UNSUPPORTED == {3, 74}                    # NotSupported


def test_host_info_reports_the_described_capacity(driver: LibvirtDriver) -> None:
    info = driver.host_info("h1")
    assert (info.vcpus, info.memory_mb, info.local_gb, info.hypervisor_type) == \
        (8, 16384, 500, "TEST")


def test_an_injected_fault_fails_exactly_the_next_call(driver: LibvirtDriver) -> None:
    r = ref()
    driver.inject_fault("spawn", HypervisorError("injected"))
    with pytest.raises(HypervisorError, match="injected"):
        driver.spawn(r)
    assert driver.spawn(r) is P.RUNNING


def test_hostile_strings_are_escaped_in_the_domain_xml(driver: LibvirtDriver) -> None:
    r = InstanceRef(uuid=str(uuid.uuid4()), name="<script>&\"'",
                    flavor=Flavor(name="a&b", vcpus=1, memory_mb=64),
                    image_ref="x\"/><evil/>", metadata={"k<": "v&\"'>"})
    assert driver.spawn(r) is P.RUNNING
    assert "<evil/>" not in driver.connect().lookupByUUIDString(r.uuid).XMLDesc()

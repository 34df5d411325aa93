"""libvirt errors as the domain's typed errors, and libvirt's states as Nova's power states."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import libvirt

from compute.domain.errors import (
    GuestAgentNotResponding,
    GuestInvalidState,
    GuestNotFound,
    HypervisorError,
    HypervisorInvalidArgument,
    HypervisorOperationFailed,
    HypervisorTimeout,
    NotSupported,
)
from compute.domain.states import PowerState

R = TypeVar("R")

# libvirt's own error report goes to stderr by default; ours is the typed error.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

VIR_ERR_NO_SUPPORT = 3
VIR_ERR_NO_DOMAIN = 42

# libvirt error code -> the typed error (libvirt-test-driver.md, qemu-tcg.md A4); any other
# code is a plain HypervisorError. Each carries libvirt's code and message.
BY_CODE: dict[int, type[HypervisorError]] = {
    libvirt.VIR_ERR_INVALID_ARG: HypervisorInvalidArgument,            # 8
    libvirt.VIR_ERR_OPERATION_FAILED: HypervisorOperationFailed,       # 9
    libvirt.VIR_ERR_NO_DOMAIN: GuestNotFound,                          # 42
    libvirt.VIR_ERR_OPERATION_INVALID: GuestInvalidState,              # 55
    libvirt.VIR_ERR_OPERATION_TIMEOUT: HypervisorTimeout,              # 68
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE: GuestAgentNotResponding,       # 86
}
UNSUPPORTED = frozenset({VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED})  # 3, 74

_POWER = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTDOWN,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.SUSPENDED,
}


def _affect(dom: libvirt.virDomain) -> int:
    """Change the running guest (if it runs) and its persistent definition."""
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    return flags | libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else flags


def _typed(method: Callable[..., R]) -> Callable[..., R]:
    """Turn libvirt errors into the domain's typed errors (by code), with libvirt's code."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> R:
        self._maybe_fail(method.__name__)
        try:
            return method(self, *args, **kwargs)
        except libvirt.libvirtError as exc:
            code = exc.get_error_code()
            message = str(exc.get_error_message() or exc)
            if code in UNSUPPORTED:
                raise NotSupported(message) from exc
            raise BY_CODE.get(code, HypervisorError)(
                message, libvirt_code=code, details=traceback.format_exc()) from exc

    return wrapper



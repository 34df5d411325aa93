"""Nova's classic default flavors, so ``compute boot --flavor m1.small`` works out of the box."""

from __future__ import annotations

from compute.events.commands import Flavor

FLAVORS: dict[str, Flavor] = {
    f.name: f
    for f in (
        Flavor(name="m1.tiny", vcpus=1, memory_mb=512, root_gb=1),
        Flavor(name="m1.small", vcpus=1, memory_mb=2048, root_gb=20),
        Flavor(name="m1.medium", vcpus=2, memory_mb=4096, root_gb=40),
        Flavor(name="m1.large", vcpus=4, memory_mb=8192, root_gb=80),
        Flavor(name="m1.xlarge", vcpus=8, memory_mb=16384, root_gb=160),
    )
}

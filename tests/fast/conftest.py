"""The fast tier: service rules checked in-process, no nats-server, no libvirt, no SQL file.

Every test here runs in milliseconds; ``make fast`` runs this directory (with the other
infrastructure-free tests) and ``make mutation`` uses it as mutmut's test runner."""

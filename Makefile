# The two commands of the README: `make demo` and `make test`. Everything else is a step.
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: setup demo up test fast mutation bench chaos clean real-hypervisor

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(BIN)/compute demo

up: setup
	$(BIN)/compute up

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The fast tier: the service's rules in-process (no nats-server, libvirt or SQL file), seconds.
fast: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/fast tests/test_domain.py $(PYTEST_ARGS)

# Not part of `make test`: mutmut on compute/domain/ against the fast tier only ([tool.mutmut]
# in pyproject.toml), then the kill rate without the mutants the README judges equivalent.
MUTATION_TIMEOUT ?= 1800
mutation: setup
	$(BIN)/pip install -q -e '.[mutation]'
	rm -rf mutants
	nice -n 10 timeout $(MUTATION_TIMEOUT) $(BIN)/mutmut run --max-children 2 > /dev/null
	$(BIN)/python scripts/mutation_score.py

bench: setup
	$(BIN)/python bench/run.py $(BENCH_ARGS)

chaos: setup
	$(BIN)/python -m tests.chaos.harness --seconds 120 --instances 100 --kills 10 --nats-restarts 3 --fault-rate 0.05 \
		--outages 2 --outage-seconds 10 --hostile-rate 0.05

clean:
	rm -rf var .pytest_cache mutants

# Not part of `make test`: the driver on a real hypervisor (QEMU/TCG under libvirtd, root).
# Installs what is missing, starts virtlogd + libvirtd + a session daemon (the second host),
# builds the tiny guest, runs tests/real against qemu:///system, stops what it started.
real-hypervisor: setup
	bash scripts/real-hypervisor.sh run

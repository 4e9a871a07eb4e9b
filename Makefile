# clonefleet: the two commands of README.md (make demo, make test) and the developer's others.
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out

.PHONY: setup demo test bench lint typecheck clean docs

setup:
	@./scripts/setup.sh

# make demo RBD=1 also runs the demo on a single-node Ceph cluster (scripts/demo-rbd.sh), started and stopped
# for it; make test starts one for the RBD tests and stops it after them (tests/ceph_cluster.py).
demo: setup
	@./scripts/demo.sh "$(OUT)"

test: setup
	@./scripts/test.sh

bench: setup
	@$(PY) -m benchmarks

# docs/cli.md: every command's --help, generated from the code (tests/cli/test_cli_reference.py holds them equal)
docs: setup
	$(PY) -m clonefleet.cli.reference docs/cli.md

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(OUT) .pytest_cache .mypy_cache .ruff_cache

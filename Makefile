# clonefleet: the two commands of README.md (make demo, make test) and the developer's others.
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out

.PHONY: setup demo test bench lint typecheck clean

setup:
	@./scripts/setup.sh

demo: setup
	@./scripts/demo.sh "$(OUT)"

test: setup
	@./scripts/test.sh

bench: setup
	@$(PY) -m benchmarks

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf $(OUT) .pytest_cache .mypy_cache .ruff_cache

# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
# torch is installed first so that a CPU build can be chosen: make test TORCH=torch==2.13.0
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.diffplan-installed

.PHONY: demo test check docs install bench bench-venv clean sysdeps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test,docs]"
	touch $(STAMP)

install: $(STAMP)

# Offscreen MuJoCo rendering (MUJOCO_GL=egl) needs EGL and Mesa; installed when missing and possible.
sysdeps:
	@if ldconfig -p | grep -q 'libEGL.so.1' && ldconfig -p | grep -q 'libGL.so.1'; then :; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 >/dev/null; \
	else echo "warning: EGL/Mesa libraries missing; install libegl1 libegl-mesa0 libgl1-mesa-dri for rendering"; fi

demo: sysdeps $(STAMP)
	MUJOCO_GL=egl $(BIN)/diffplan demo --workdir diffplan-demo --json diffplan-demo/eval.json

# static checks first, the tests last (CI reads the test runner's closing line)
test: sysdeps $(STAMP)
	$(MAKE) --no-print-directory check
	$(BIN)/python -m pytest -q -m "not slow"

# static checks (also run by `make test`): import layers, lint, format, types
check: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy src/diffplan
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir .site

# the documentation site (MkDocs Material, API reference from the docstrings) at http://127.0.0.1:8000
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

bench: $(STAMP)
	$(BIN)/python benchmarks/plan_speed.py

# d3rlpy baselines need gymnasium 1.0, so they get an environment of their own.
bench-venv:
	test -x .venv-bench/bin/python || $(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install -q "$(TORCH)"
	.venv-bench/bin/python -m pip install -q "d3rlpy==2.8.1" "gymnasium[mujoco]==1.0.0"

clean:
	rm -rf $(VENV) .venv-bench diffplan-demo .pytest_cache .site

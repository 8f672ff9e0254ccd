# Every target creates .venv first if it is missing; a second run reuses it and starts at once.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rlteach-installed

.PHONY: lab test test-fast lint format clean-venv chromium student

# JupyterLab refuses to start as root unless told to (containers and course VMs often run as root).
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)  ## start JupyterLab on notebooks/ with the rlteach kernel
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ALLOW_ROOT)

test: $(STAMP) chromium  ## the whole suite: unit tests, every notebook headless and in Chromium, lint
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory lint

test-fast: $(STAMP)  ## quick iteration: library tests only, no notebooks, no browser, no slow training
	$(BIN)/python -m pytest -m "not notebook and not slow and not e2e"

# Debian's Chromium for tests/e2e (Playwright drives it; it never downloads a browser). Installed
# when missing; if that fails (no root, no apt) the browser tests skip and say why.
chromium:
	@command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium) \
		|| echo "chromium could not be installed: the browser tests (tests/e2e) will be skipped"

lint: $(STAMP)  ## ruff, the formatter's check, and mypy over rlteach/ (settings in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Reinstall only when the dependency files change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,ray,instructor]"
	$(BIN)/python -m ipykernel install --sys-prefix --name rlteach --display-name "Python (rlteach)"
	touch $(STAMP)

clean-venv:
	rm -rf $(VENV)

student: $(STAMP)  ## the student release: notebooks without solutions, in build/student/
	$(BIN)/python -m rlteach release --out build/student

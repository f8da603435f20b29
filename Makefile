# One-command entry points. Every target first runs scripts/setup.sh, which installs what is missing
# (Debian packages, .venv, torch, llama-cpp-python, the project, bundled models, Coqui) and takes about a
# second when nothing is.
#
#   make run     set up if needed, then start the desktop app
#   make test    set up if needed, then the import contract and the whole test suite
#
# VENV=/path/to/venv picks another virtual environment; PYTEST_ARGS="-m 'not integration'" narrows the run.

VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup run test test-unit lint avatar

help:
	@echo "make run        set up if needed, then start the desktop app"
	@echo "make test       set up if needed, then lint-imports and the whole pytest suite"
	@echo "make test-unit  the unit tests only (no models, no Qt)"
	@echo "make lint       the import contract only (the core never imports Qt or VLC)"
	@echo "make setup      install what is missing and nothing else"
	@echo "make avatar     remake assets/avatars/astronaut.png and assets/icon.png (needs scikit-image)"

setup:
	@VENV="$(VENV)" bash scripts/setup.sh

run: setup
	$(PY) -m ui.app

lint: setup
	$(VENV)/bin/lint-imports

# pytest exits 5 when it collected nothing: for a test command that is a failure, not a pass.
test: lint
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: FAILED: pytest collected no tests (is tests/ empty, or did PYTEST_ARGS filter everything out?)" >&2; exit 1; fi; \
	exit $$rc

test-unit: setup
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test-unit: FAILED: pytest collected no tests in tests/unit" >&2; exit 1; fi; \
	exit $$rc

avatar: setup
	@$(PY) -c "import skimage" 2>/dev/null || $(PY) -m pip install -q scikit-image
	$(PY) scripts/make_avatar.py

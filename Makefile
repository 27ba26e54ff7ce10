# The two commands a newcomer needs: `make run` and `make test`. Both create .venv and install
# the project first; neither needs anything configured.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint typecheck pytest bench constraints clean browser

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# make run PORT=8010: the web on another port (default 8000).
run: install
	$(BIN)/b24notify up $(if $(PORT),--port $(PORT))

# lint-imports: the import contracts in pyproject.toml ([tool.importlinter]); mypy runs strict
# ([tool.mypy] strict = true).
lint: install typecheck
	$(BIN)/ruff check b24notify tests bench
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

# The browser tests (tests/browser) drive Debian's Chromium through Playwright. Installed here when
# missing and possible (root and apt-get); otherwise those tests skip, saying so.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -qq chromium >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }; }; } || \
	  echo "make: Chromium is missing and cannot be installed here: the browser tests will be skipped"

pytest: install browser
	$(BIN)/pytest

test: lint pytest

bench: install
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/e2e.py

# constraints.txt pins the exact versions make, the Dockerfile and CI install. After adding or
# upgrading a dependency: $(BIN)/pip install -e '.[dev]' (or pip install -U NAME), make test, then
# make constraints, and commit both files.
constraints:
	{ echo "# Exact versions for make, the Dockerfile and CI (pip install -c). Regenerate: make constraints"; \
	  $(BIN)/python -m pip freeze --exclude-editable; } > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

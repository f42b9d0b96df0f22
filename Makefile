# guestkey — every command a developer or CI needs. Only Python 3.11+ and make are assumed:
# the first target that needs them installs uv (into .tools/) and the locked dependencies.

PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
SYNCED := $(VENV)/.synced-$(UV_VERSION)

.PHONY: install browser run test test-fast image-test bench lint format typecheck fake-seam migrate schemas translations clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(SYNCED): $(UV) pyproject.toml uv.lock
	UV_PYTHON_DOWNLOADS=never $(UV) sync --frozen --python $(PYTHON)
	@touch $@

install: $(SYNCED)  ## install uv and the locked dependencies into .venv

HOST ?= 127.0.0.1
PORT ?= 8000
GUESTKEY_SANDBOX ?= true

run: install  ## start guestkey on HOST:PORT in sandbox mode (GUESTKEY_SANDBOX=false for a real Seam)
	GUESTKEY_SANDBOX=$(GUESTKEY_SANDBOX) $(VENV)/bin/guestkey serve --host $(HOST) --port $(PORT)

browser:  ## Chromium and chromedriver from Debian's packages, for the console's browser tests
	bash scripts/ensure-browser.sh

test: install browser  ## the whole suite: unit, integration, end-to-end and browser
	$(VENV)/bin/pytest

test-fast: install  ## everything but the end-to-end tests
	$(VENV)/bin/pytest -m "not e2e"

image-test:  ## build the Dockerfile and run the image (migrate, serve, API + worker + fake Seam); root
	bash scripts/image-test.sh

bench: install  ## the performance benchmarks (bench/, about 15 minutes); not part of make test
	$(VENV)/bin/python -m bench

lint: install
	$(VENV)/bin/ruff check app tests scripts migrations bench
	$(VENV)/bin/ruff format --check app tests scripts migrations bench

format: install
	$(VENV)/bin/ruff format app tests scripts migrations bench
	$(VENV)/bin/ruff check --fix app tests scripts migrations bench

typecheck: install
	$(VENV)/bin/mypy

fake-seam: install  ## the fake Seam API on :8090
	$(VENV)/bin/guestkey fake-seam --port 8090

migrate: install
	$(VENV)/bin/guestkey migrate

schemas: install  ## regenerate the trimmed Seam schemas the fake is tested against
	$(VENV)/bin/python scripts/trim_seam_schemas.py

# The guest-facing text: templates → messages.pot → one .po per language → .mo (committed, so an
# install needs no compile step; tests/test_i18n.py fails when a .mo differs from its .po).
translations: install  ## re-extract guest message text, update every catalogue, compile them
	$(VENV)/bin/pybabel extract -F babel.cfg -o app/locales/messages.pot --project guestkey \
		--add-location file --omit-header --no-wrap --sort-output .
	$(VENV)/bin/pybabel update -i app/locales/messages.pot -d app/locales -D messages \
		--ignore-obsolete --no-fuzzy-matching --ignore-pot-creation-date --no-wrap
	$(VENV)/bin/pybabel compile -d app/locales -D messages --statistics

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache .mypy_cache

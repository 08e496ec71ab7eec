# `make run` and `make test` install whatever is missing, then do their job.
# Python packages go into .venv/; Debian packages (chromium, redis-server) are
# installed with apt-get when absent (as root, or through sudo).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
SUDO   := $(if $(filter 0,$(shell id -u)),,sudo)
BROWSER ?= $(or $(HOTLINE_BROWSER),/usr/bin/chromium)

.PHONY: run test lint bench soak deps system-deps clean

run: deps
	$(VENV)/bin/hotline up

test: deps
	$(PY) -m pytest -q -rs

# Each benchmark prints its figures beside a baseline measured in the same run.
bench: deps
	$(PY) -m bench $(BENCH)

# 2,000 reports through `hotline up` while a worker and Redis are killed (N=… for fewer).
soak: deps
	$(PY) -m tests.soak $(N)

lint: deps
	$(VENV)/bin/ruff check .

deps: $(STAMP) system-deps

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=compat
	rm -f $(VENV)/.installed-*
	touch $@

# Chromium drives the scans; redis-server backs the private Redis used when
# HOTLINE_REDIS_URL is unset. Each is installed only when missing.
system-deps:
	@missing=""; \
	test -x "$(BROWSER)" || missing="$$missing chromium"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

# Two entry points for a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	# torch first, pinned: on a machine without a GPU this is the local CPU build,
	# and it stops pip from pulling a CUDA build while resolving the rest.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hetacumn demo -o demo_out --overwrite

test: $(STAMP)
	$(PY) -m pytest tests -q

clean:
	rm -rf $(VENV) demo_out

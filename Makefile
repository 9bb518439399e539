# Quick start: `make learn` (set up and run the default job), `make test` (set up and run the suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: learn test bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[train,test]'
	touch $@

install: $(STAMP)

learn: $(STAMP)
	$(BIN)/edgelll learn

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The benchmarks read MNIST from $(EDGELLL_DATA)/mnist.npz: make bench EDGELLL_DATA=~/data
bench: $(STAMP)
	@test -n "$(EDGELLL_DATA)" || { echo "error: set EDGELLL_DATA to the folder holding mnist.npz (make bench EDGELLL_DATA=~/data)" >&2; exit 2; }
	$(BIN)/python benchmarks/split_mnist.py --data $(EDGELLL_DATA)/mnist.npz

clean:
	rm -rf $(VENV) build *.egg-info

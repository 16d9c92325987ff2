# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -e ".[demo,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/classcontrast explain --top-k 2 --contrast original weighted --out demo/why.png --save-maps demo/why.npz

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/pip install -e ".[bench]"
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(VENV) demo .pytest_cache

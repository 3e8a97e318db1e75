# Two commands do all the set-up on a fresh machine: `make test` and `make demo`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Quiet TensorFlow's C++ start-up banner in every process we start.
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: test check docker-test demo bench scenarios install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Two workers (pytest-xdist), one test file each at a time: the slow tests wait on peer
# processes more than they compute, and a file's module fixtures stay in one worker.
test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations=30

# The fast tier for day-to-day work: everything but the long end-to-end runs (marked slow).
check: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

# compose.yaml in a real Docker engine (started with docker-up where none runs): 4 to 15 minutes.
docker-test: $(STAMP)
	LEARNAE_DOCKER_TEST=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/scenario/test_compose_engine.py

# The quickstart scenario: 4 real peers on loopback; prints where its report and plot are.
demo: $(STAMP)
	$(BIN)/python -m learnae.cli.main scenario run scenarios/quickstart.yaml

# Every shipped scenario, one after the other (about 25 minutes); see docs/BENCHMARKS.md.
scenarios: $(STAMP)
	$(BIN)/python -m bench.scenarios

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info

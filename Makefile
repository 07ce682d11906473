# The two commands a newcomer needs are `make demo` and `make test`; both bootstrap .venv/.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: bootstrap demo test test-fast clean-demo

bootstrap:
	@bash tools/bootstrap.sh

# The whole chain on the synthetic data set: data -> teacher -> tokenizers -> MIM -> downstream -> leaderboard.
demo: bootstrap
	$(PY) tools/run_suite.py --synthetic

# Every test, the slow end-to-end ones included (what CI runs).
test: bootstrap
	$(PY) -m pytest -ra --durations=25 $(PYTEST_ARGS)

# Unit tests only, for a quick loop while editing.
test-fast: bootstrap
	$(PY) -m pytest -ra -m "not slow and not dist" $(PYTEST_ARGS)

clean-demo:
	rm -rf work_dirs/demo data/synthetic

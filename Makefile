# make demo: set up .venv, run the pipeline on the bundled digits sample (teacher, soft
# labels, student, int8 export) and print the comparison.
# make test: set up .venv with the test dependencies, lint (ruff, import layers), build the docs and run the
# test suite; make test-fast: the same without the docs and the tests marked slow.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KDCLI  := $(BIN)/kdcli
RUNS   ?= runs
DATA   ?= digits

.PHONY: demo test test-fast lint install clean bench bench-report bench-accuracy docs

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

test: lint
	$(MAKE) --no-print-directory docs
	$(BIN)/python -m pytest -q -n auto --dist worksteal

# The tests not marked slow (under 3 minutes on 2 cores), after the same lint.
test-fast: lint
	$(BIN)/python -m pytest -q -n auto --dist worksteal -m "not slow"

# ruff, and the package's layers (lint-imports reads the contract in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check kdcli tests benchmarks samples docs
	$(BIN)/lint-imports --no-cache

# The documentation site (Sphinx, MyST, furo; the docs extra, which the test extra includes) into docs/_build/html,
# warnings as errors: a broken link or cross-reference fails it. The CLI reference is generated from kdcli.cli.
docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -n -q -b html docs docs/_build/html
	@echo "docs/_build/html/index.html"

# The pipeline as file targets: each step reruns only when its input changed.
$(RUNS)/teacher.keras: $(STAMP)
	$(KDCLI) train-teacher --data $(DATA) --out $@

$(RUNS)/soft.h5: $(RUNS)/teacher.keras
	$(KDCLI) soft-labels --teacher $< --data $(DATA) --out $@

$(RUNS)/student.keras: $(RUNS)/soft.h5
	$(KDCLI) distill --soft-labels $< --data $(DATA) --student mlp --out $@

$(RUNS)/student-int8.tflite: $(RUNS)/student.keras
	$(KDCLI) export $< --format tflite --quantize int8 --data $(DATA) --out $@

demo: $(RUNS)/student-int8.tflite
	$(KDCLI) evaluate $(RUNS)/teacher.keras $(RUNS)/student.keras $(RUNS)/student-int8.tflite --data $(DATA)

# Speed benchmarks (about 20 minutes on 2 cores): writes BENCHMARKS.md, and the raw numbers to
# benchmarks/speed.json, from which `make bench-report` rewrites BENCHMARKS.md without measuring
# again (after `make bench-accuracy` has updated its sections).
bench: $(STAMP)
	cd benchmarks && ../$(BIN)/python speed.py --out ../BENCHMARKS.md --json speed.json

bench-report: $(STAMP)
	cd benchmarks && ../$(BIN)/python speed.py --out ../BENCHMARKS.md --render speed.json

# Accuracy of teacher, scratch and distilled students over 3 seeds: the one-shot default against its
# scratch twin on data sets of every kind (defaults.py; its teachers kept in benchmarks/runs-defaults),
# stopping rules replayed on whole training curves from those teachers (stopping.py), mlp against cnn
# teachers for 1-D signals (teacher_arch.py), per method (accuracy.py), per budget (budgets.py:
# --epochs auto against a fixed budget, on digits, a tabular set, a 1-D signal set and the MNIST
# split), the teacher's budget (teachers.py), every kind of model a user has as a teacher
# (teacher_kinds.py: one run each) and the ways to make distillation pay
# (paying.py: function matching, an ensemble, hints, --tune); several hours on 2 cores. Writes
# benchmarks/*.md, which the next `make bench` includes in BENCHMARKS.md. Each resumes from its JSON.
bench-accuracy: $(STAMP)
	cd benchmarks && ../$(BIN)/python defaults.py --workdir runs-defaults --json defaults.json --markdown defaults.md
	cd benchmarks && ../$(BIN)/python stopping.py --teachers runs-defaults --json stopping.json --defaults defaults.json --markdown stopping.md
	cd benchmarks && ../$(BIN)/python teacher_arch.py --json teacher_arch.json --markdown teacher_arch.md
	cd benchmarks && ../$(BIN)/python accuracy.py --json accuracy.json --markdown accuracy.md
	cd benchmarks && ../$(BIN)/python budgets.py --json budgets.json --markdown budgets.md  # resumes: delete budgets.json to start over
	cd benchmarks && ../$(BIN)/python teachers.py --json teachers.json --markdown teachers.md
	cd benchmarks && ../$(BIN)/python teacher_kinds.py --json teacher_kinds.json --markdown teacher_kinds.md
	cd benchmarks && ../$(BIN)/python paying.py --json paying.json --markdown paying.md --minutes 1000
	cd benchmarks && ../$(BIN)/python compress.py --json compress.json --markdown compress.md

clean:
	rm -rf $(RUNS)

# Two commands on a fresh machine:  make demo  (the main job on bundled data)  and  make test.
# STACK=tf1|tf2 picks the TensorFlow lane (default auto: tf2 with the newest Python 3.10-3.13, else tf1 when only a
# Python 3.7 is found); each lane has its own venv, .venv/tf1 or .venv/tf2. See scripts/pick-lane.
STACK  ?= auto
PICK   := $(shell scripts/pick-lane "$(STACK)")
LANE   := $(word 1,$(PICK))
VENV   := .venv/$(LANE)
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
TESTS  ?= test

ifeq ($(LANE),)
$(error no TensorFlow lane for STACK=$(STACK): see the message above)
endif

.PHONY: demo test install lane clean

lane:
	@echo "lane $(LANE): $(wordlist 3,99,$(PICK)); venv $(VENV)"

# Trains ShuffleNetV1 g3 on the bundled digits into runs/demo; rerunning resumes (instant once done).
demo: lane $(STAMP)
	$(VENV)/bin/zoo-run list
	$(VENV)/bin/zoo-run train shufflenetv1_g3 --model_dir runs/demo

test: lane $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check ./examples/resnet50  # the second network, as a user installs it
	$(PY) -m pytest -q --durations=12 $(TESTS)

install: lane $(STAMP)

$(PY):
	@echo "creating $(VENV) with $(word 2,$(PICK))"
	@mkdir -p .venv && "$(word 2,$(PICK))" -m venv $(VENV)

# Editable install: code changes need no reinstall; setup.py changes (entry points, pins) do.
$(STAMP): $(PY) setup.py
	@# lane tf1 keeps a pip that still installs TF 1.15's wheels and their pinned dependencies
	$(if $(filter tf1,$(LANE)),$(PY) -m pip install -q --disable-pip-version-check "pip<24")
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test]"
	@touch $@

clean:
	rm -rf .venv build *.egg-info

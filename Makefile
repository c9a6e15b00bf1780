# The two commands of the README: `make demo` and `make test`. Both set up everything they need.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export WANDB_SILENT := true

.PHONY: demo test tiny install browser clean

install: $(STAMP)

# The project itself is installed editable, so scripts/ and the tests import it from any directory.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Tokenizer + tiny Llama-style models, built offline and cached under outputs/tiny_models.
tiny: $(STAMP)
	$(PY) -m tiny

# Debian's headless Chromium drives the TDS viewer test; best effort (needs root and apt): without
# it that one test is skipped with a message saying how to install it.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1; } || \
		echo "note: chromium could not be installed; the TDS viewer browser test will be skipped"

# The main job on the tiny default: the Persona study (Razin et al., Section 3) on CPU. SFT on all
# prompts, then DPO on one prompt for 100 steps, 10 seeds x 2 token pairs, then the results tables.
# One thread: the tiny models are too small to gain from more, and it keeps a shared machine usable.
PERSONA_PLANS := persona_experiments/experiments_plans
demo: export OMP_NUM_THREADS := 1
demo: $(STAMP) tiny
	$(PY) -m persona_experiments --plan_config_path $(PERSONA_PLANS)/persona_sft_tiny.json
	$(PY) -m persona_experiments --plan_config_path $(PERSONA_PLANS)/persona_post_sft_dpo_tiny.json
	$(PY) -m persona_experiments.results --experiments_dir outputs/demo/persona

test: $(STAMP) tiny browser
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

clean:
	rm -rf outputs/demo

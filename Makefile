# Two commands do everything on a fresh machine:
#   make lab    set up, then open the course in JupyterLab at notebooks/00_start_here.ipynb
#   make test   set up, then run the whole test suite (what CI runs)
# Set-up goes into ./.venv unless a virtual or conda environment is already active.

ifdef VIRTUAL_ENV
PY := python
else ifdef CONDA_PREFIX
PY := python
else
PY := .venv/bin/python
endif
STAMP := .venv/.installed-$(notdir $(PY))

.PHONY: lab test test-gpu install lock try-latest execute bench check fetch student chromium clean-cache reproduce reproduce-07 reproduce-paper site hub gl

install: $(STAMP)

# Every install takes the exact versions CI tested from constraints.txt (written by `make lock`).
$(STAMP): pyproject.toml course_utils/assets.py constraints.txt
	@if [ "$(PY)" = ".venv/bin/python" ] && [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,classroom,reproduce]"
	$(PY) -m course_utils install-assets
	@mkdir -p .venv && touch $@

# After `make test` passes in an environment: pin its exact versions for every install (constraints.txt, and
# constraints-colab.txt without the torch stack, for Colab's setup cell). Commit both.
lock: $(STAMP)
	$(PY) -m course_utils lock

# The newest versions the ranges in pyproject.toml allow, in a separate .venv-latest: install them, say which differ
# from the lock, run the unit tests (then `make test PY=.venv-latest/bin/python` for the lessons, and `make lock`).
try-latest:
	python3 -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet --upgrade pip
	.venv-latest/bin/python -m pip install --quiet --upgrade -e ".[test,classroom,reproduce]"
	.venv-latest/bin/python -m course_utils install-assets
	.venv-latest/bin/python -m course_utils lock --diff
	.venv-latest/bin/python -m pytest -p no:cacheprovider -q tests

# Jupyter refuses to run as root (containers, CI) unless told it is intended.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)

# jupyter/learner/ turns off what self-study does not use: nbgrader's menus (installed for instructors) and the news.
lab: $(STAMP) gl
	JUPYTER_CONFIG_PATH=$(CURDIR)/jupyter/learner $(PY) -m jupyter lab $(ALLOW_ROOT) notebooks/00_start_here.ipynb

# The lessons run first (strict nbval), so the student-copy and browser tests find warm caches.
test: $(STAMP) chromium hub gl
	$(PY) -m ruff check .
	COURSE_OFFLINE=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -p no:cacheprovider -ra --durations=40 \
	  notebooks tests --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
	  --nbval-cell-timeout=600

# On a machine with CUDA: the install, the device tests on the real GPU, the whole suite and the timings
# (.ci/gpu-check says what each step checks; `bash .ci/gpu-check --dry-run` runs its first steps on a CPU).
test-gpu:
	bash .ci/gpu-check

# The browser test drives Debian's Chromium (Playwright cannot download its own browser here).
chromium:
	@command -v chromium >/dev/null || { command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium is missing and could not be installed: the browser test will say so"

# The proxy JupyterHub needs (configurable-http-proxy 5 from npm) into hub/node_modules, as hub/package-lock.json pins it.
hub:
	@test -x hub/node_modules/.bin/configurable-http-proxy || npm ci --prefix hub --no-audit --no-fund --loglevel=error

# Lesson 07 renders MuJoCo offscreen through EGL: Debian's libegl1 and Mesa's software drivers (Colab has them).
gl:
	@dpkg -s libegl1 libgl1-mesa-dri >/dev/null 2>&1 || ! command -v apt-get >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1-mesa-dri >/dev/null; } || \
	  echo "libegl1 and libgl1-mesa-dri are missing and could not be installed: lesson 07 will say so"

# Re-execute the notebooks in place to refresh their committed outputs (one: make execute NB=notebooks/03_*.ipynb).
execute: $(STAMP)
	$(PY) -m course_utils execute $(NB)

student: $(STAMP)
	$(PY) -m course_utils student

# Lesson 04's comparisons at full budget (about 50 min on 2 CPU cores); writes course_utils/reproduced/.
reproduce: $(STAMP)
	$(PY) -m course_utils reproduce 04

# Lesson 07's approaches and controls over 6 label budgets and 3-5 seeds (about 20 min on 2 CPU cores; run it again
# to go on where it stopped); writes course_utils/reproduced/07_robot_reaching.json.
reproduce-07: $(STAMP)
	$(PY) -m course_utils reproduce 07
	$(PY) -m course_utils reproduce 07-loop

# A recipe in the spirit of Deitsch et al. 2019 and its ablations, one committed row per finished run (4.5 to 52 min a run
# on 2 CPU cores, measured;
# run it again to go on where it stopped): course_utils/reproduced/04_paper_recipe.jsonl
reproduce-paper: $(STAMP)
	$(PY) -m course_utils reproduce paper --commit

# The course website from the committed notebooks (nothing is executed): build/site/_build/html/index.html
site: $(STAMP)
	$(PY) -m course_utils site

bench: $(STAMP)
	$(PY) -m course_utils bench

check: $(STAMP)
	$(PY) -m course_utils check

fetch: $(STAMP)
	$(PY) -m course_utils fetch

clean-cache:
	find data -mindepth 1 ! -name README.md -exec rm -rf {} +

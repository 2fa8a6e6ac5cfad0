# mlops-nb: `make run` sets everything up and trains on the demo data; `make test` sets up and tests.
# Every target creates .venv on demand from pyproject.toml.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# named by pyproject.toml's content, not its time: nbdev-export rewrites the file unchanged, which must not reinstall
STAMP  := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-16)
ARGS   ?=
# pytest-xdist workers for `make test` (one per core here; `make pytest TEST_WORKERS=0` runs the suite in one process)
TEST_WORKERS ?= 2
# what the suite leaves in its TMPDIR, or running, is reported and stopped, and fails the run; LEFTOVERS=--warn only
# reports it (to see the rest of a run's results while hunting a leak)
LEFTOVERS ?=
# the JupyterLab panel: lab/ built into lab/labextension (the wheel ships it), and linked into .venv's JupyterLab
LABEXT  := lab/labextension/package.json
LABLINK := $(VENV)/share/jupyter/labextensions/mlops-nb-lab/package.json

.PHONY: setup panel run test check lint export clean-nbs nbdev-test pytest ui serve demo-loop lab docs browser promtool image bench-drift bench-monitor bench-peers bench-serving bench distclean team team-down

setup: $(STAMP)
	@# bytecode for the editable package, as pip writes it when it installs a wheel (Python writes none itself
	@# where PYTHONDONTWRITEBYTECODE is set, and each command would compile the package again: ~0.1 s)
	@$(BIN)/python -m compileall -q mlops_nb

## the JupyterLab panel, built and linked into .venv (make lab and make test need it; make run does not, nor Node)
panel: $(LABEXT) $(LABLINK)

$(STAMP):
	$(PYTHON) -m venv $(VENV)
	@# uv installs what pip would (the same packages from the same index, bytecode compiled), in about a third of the time
	$(BIN)/python -m pip install --quiet "uv>=0.5"
	@# in a temporary folder of its own: uv leaves its build locks (uv-setuptools-*.lock) in the one it is given
	mkdir -p $(abspath $(VENV))/.tmp
	TMPDIR=$(abspath $(VENV))/.tmp $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -e ".[dev]"
	rm -rf $(abspath $(VENV))/.tmp
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## the panel's JavaScript: its packages from the npm registry (pinned by lab/yarn.lock), built by JupyterLab's builder,
## by the same function as `pip wheel .` (buildsys/backend.py: nothing to do when the built panel is current)
$(LABEXT): $(STAMP) lab/package.json lab/yarn.lock lab/src/*.js lab/style/*.css
	$(BIN)/python buildsys/backend.py
	touch $(LABEXT)

## what `pip install` of the wheel puts in share/ and etc/, for the editable install: the built panel and the config
## that enables its server extension
$(LABLINK): $(LABEXT)
	rm -rf $(VENV)/share/jupyter/labextensions/mlops-nb-lab
	mkdir -p $(VENV)/share/jupyter/labextensions $(VENV)/etc/jupyter/jupyter_server_config.d
	ln -s $(CURDIR)/lab/labextension $(VENV)/share/jupyter/labextensions/mlops-nb-lab
	cp jupyter-config/server-config/mlops_nb.json $(VENV)/etc/jupyter/jupyter_server_config.d/

## the main job: the training pipeline on the demo data (pass ARGS="-p model=rf ..." to change it)
run: setup
	$(BIN)/mlops-nb run pipelines/train.yaml $(ARGS)

## everything CI checks: export in sync, notebooks clean, lint, pytest. Every notebook's examples run in pytest's docs
## test, which builds the site as `make docs` does: each notebook in nbdev's shell, skipping the same flagged cells as
## nbdev-test and failing on the first error, naming the cell (`make nbdev-test` runs them alone, reporting every one)
test: check lint browser promtool pytest

check: setup
	@$(BIN)/python .ci/check_sync.py

## the code rules: lines up to 120 and one statement per line (ruff), imports pointing down the layers (import-linter),
## notebooks in nbdev's rhythm (an example after each definition, no cell over 45 lines)
lint: setup
	$(BIN)/ruff check notebooks pipelines mlops_nb buildsys
	$(BIN)/ruff format --check notebooks pipelines
	$(BIN)/lint-imports
	$(BIN)/python .ci/check_rhythm.py

## in a temporary folder of its own, removed after, as `mlops-nb docs` runs them: the examples' scratch folders go with it
nbdev-test: setup
	@tmp=$$(mktemp -d /tmp/mlops-nb-nbdev-test.XXXXXX) && \
	TMPDIR=$$tmp $(BIN)/nbdev-test --n-workers 2; code=$$?; rm -rf $$tmp; exit $$code

## the suite runs with a TMPDIR of its own (short: unix sockets live there; others may enter it, as /tmp: the team's
## PostgreSQL runs as postgres), checked empty and with no process left
## behind at the end (.ci/leftovers.py), then removed: make test leaves nothing in /tmp
pytest: setup panel
	@tmp=$$(mktemp -d /tmp/mlops-nb-tests.XXXXXX) && chmod 755 $$tmp && \
	TMPDIR=$$tmp $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS); code=$$?; \
	$(BIN)/python .ci/leftovers.py $(LEFTOVERS) $$tmp || code=1; rm -rf $$tmp; exit $$code

## regenerate mlops_nb/ and README.md from notebooks/ and clean notebooks (run before committing)
export: setup
	$(BIN)/ruff format notebooks pipelines
	$(BIN)/nbdev-export
	$(BIN)/mlops-nb docs --readme
	$(BIN)/nbdev-clean --fname notebooks
	$(BIN)/nbdev-clean --fname pipelines

ui: setup
	$(BIN)/mlops-nb ui

## a team's tracking stack on 127.0.0.1: PostgreSQL and `mlflow server` with proxied artifacts, in .team/ (needs the
## PostgreSQL server package; `make team-down` stops it, its records stay for the next `make team`)
team: setup
	$(BIN)/mlops-nb team up .team

team-down: setup
	$(BIN)/mlops-nb team down .team

demo-loop: setup
	$(BIN)/mlops-nb demo-loop

serve: setup
	$(BIN)/mlops-nb serve

## JupyterLab on 127.0.0.1 with the project's .venv as the kernel, opened on the train pipeline's first step
lab: setup panel
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser --ServerApp.root_dir=$(CURDIR) --LabApp.default_url=/lab/tree/pipelines/ingest.ipynb \
	  $$([ "$$(id -u)" = 0 ] && echo --allow-root)

## the docs site, rendered offline from the notebooks into _docs/ (open _docs/index.html)
docs: setup
	$(BIN)/mlops-nb docs

## the container image of the champion (needs a Docker engine; untested on machines without one)
image: setup
	$(BIN)/mlops-nb deploy docker build/image
	docker build -t $$($(BIN)/python -c "import json; m = json.load(open('build/image/bundle.json')); from mlops_nb.ops.deploy import app_name; print(f\"{app_name(m['name'])}:{m['version']}\")") build/image

## Debian's Chromium for the browser tests (Playwright drives it; Playwright's own browser download is not used)
browser:
	@test -x /usr/bin/chromium || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

## promtool, unpacked from Debian's prometheus package into .venv/bin (nothing installed system-wide, no service
## started), for the test that checks the generated prometheus.yml and the Grafana dashboard's PromQL
promtool: setup
	@test -x $(BIN)/promtool || { tmp=$$(mktemp -d) && cd $$tmp && \
	  { apt-get download prometheus >/dev/null 2>&1 || { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); $$SUDO apt-get update -qq && apt-get download prometheus; }; } && \
	  dpkg-deb -x prometheus_*.deb root && cp root/usr/bin/promtool $(CURDIR)/$(BIN)/promtool && cd / && rm -rf $$tmp; }

bench: setup
	$(BIN)/python bench/pipeline_overhead.py
	$(BIN)/python bench/cached_run.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/serving.py
	$(BIN)/python bench/overload.py
	$(BIN)/python bench/evidence_cost.py
	$(BIN)/python bench/monitor_alarms.py
	$(BIN)/python bench/diff.py
	$(BIN)/python bench/install.py

## the scoring servers side by side: mlops-nb (plain, every core, ONNX), the edge server, MLflow's, and MLServer and
## BentoML, each peer in a virtualenv of its own (.venv-serving/), made from bench/requirements-*.txt on first use
bench-serving: setup
	test -x .venv-serving/mlserver/bin/mlserver || ($(BIN)/uv venv -q --python $(BIN)/python .venv-serving/mlserver && \
	  $(BIN)/uv pip install -q --python .venv-serving/mlserver/bin/python -r bench/requirements-serving-peers.txt)
	test -x .venv-serving/bentoml/bin/bentoml || ($(BIN)/uv venv -q --python $(BIN)/python .venv-serving/bentoml && \
	  $(BIN)/uv pip install -q --python .venv-serving/bentoml/bin/python -r bench/requirements-bentoml.txt)
	$(BIN)/python bench/serving.py --peers .venv-serving

# Ploomber and DVC (with papermill) in their own virtualenv, used only by this benchmark
# and mlops-nb as it was at PEERS_BASELINE (the code before the work on these figures; empty: left out)
PEERS_BASELINE ?= 241dc2c
bench-peers: setup
	test -x .venv-peers/bin/python || (python3 -m venv .venv-peers && .venv-peers/bin/pip install -q -r bench/requirements-peers.txt)
	$(BIN)/python bench/peers.py --peers-bin .venv-peers/bin $(if $(PEERS_BASELINE),--baseline $(PEERS_BASELINE))

## how often monitoring is wrong: false alarms on 50 clean windows, detections of 50 planted shifts (seconds)
bench-monitor: setup
	$(BIN)/python bench/monitor_alarms.py

# Evidently needs pandas < 3, so it gets its own virtualenv, used only by this benchmark
bench-drift: setup
	test -x .venv-evidently/bin/python || (python3 -m venv .venv-evidently && .venv-evidently/bin/pip install -q -r bench/requirements-evidently.txt)
	$(BIN)/python bench/drift.py --evidently-python .venv-evidently/bin/python

distclean:
	rm -rf $(VENV) .venv-evidently .venv-serving mlflow.db mlartifacts runs predictions demo-loop _docs _proc build lab/node_modules lab/labextension

# The two commands a newcomer needs: `make dev` (local stack with demo data) and
# `make test` (the whole suite against real services). Each sets up what it needs:
# what Debian packages it installs with apt-get, and names what else is missing.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements-dev.txt common/requirements.txt | cksum | cut -d' ' -f1)
# checkov brings its own `hcl2` module, which shadows python-hcl2's (the tests'): its own venv
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell cksum < requirements-checkov.txt | cut -d' ' -f1)
# the google provider's schema (@cdktf/provider-google, pinned in its package-lock.json),
# which tests/unit/test_terraform_schema.py checks every attribute name against
SCHEMA_STAMP  := infra/schema/node_modules/.installed-$(shell cksum < infra/schema/package-lock.json | cut -d' ' -f1)

.PHONY: deploy smoke teardown dev down test lint checkov fuzz model faults openapi bench bench-quick bench-intake bench-bulk soak status reconcile chain verify-chain ops dead-letters access token tokens bench-callers bench-background bench-latency bench-scale bench-smoke

$(STAMP): requirements-dev.txt common/requirements.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

$(CHECKOV_STAMP): requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || python3 -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@rm -f $(CHECKOV_VENV)/.installed-* && touch $@

$(SCHEMA_STAMP): infra/schema/package.json infra/schema/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the provider schema: apt-get install -y npm"; exit 1; }
	@npm ci --prefix infra/schema --no-audit --no-fund --silent
	@touch $@

dev: $(STAMP)       ## start Postgres, Redis, both emulators and every function, with demo data
	@$(PY) -m emulators up

down: $(STAMP)      ## stop everything `make dev` (or an interrupted test run) started
	@$(PY) -m emulators down
	@$(PY) -m emulators --profile test down
	@$(PY) -m emulators --profile docs down

status: $(STAMP)
	@$(PY) -m emulators status

token: $(STAMP)     ## a token from the dev stack's local issuer: make token P=alice (any principal's subject)
	@$(PY) -m emulators token $(P)

tokens: $(STAMP)    ## every demo caller's token as shell variables: eval "$$(make -s tokens)"
	@$(PY) -m emulators tokens

reconcile: $(STAMP) ## check the dev ledger's invariants after the checkpoint (ARGS=--full: all of them); exits 1 on any violation
	@$(PY) -m emulators run --operator $(PY) -m common.reconcile $(ARGS)

chain: $(STAMP)     ## extend the dev ledger's hash chain until caught up; prints its head
	@$(PY) -m emulators run --operator $(PY) -m common.chain extend

verify-chain: $(STAMP) ## recompute the dev ledger's hash chain; exits 1 naming the first problem (ARGS="--expect-head POS:HASH")
	@$(PY) -m emulators run --operator $(PY) -m common.chain verify $(ARGS)

ops: $(STAMP)       ## the operator's CLI against the dev stack: make ops ARGS="status" (or sweep, export, parked, replay ID, reconcile)
	@$(PY) -m emulators run --operator $(PY) -m common.ops $(ARGS)

dead-letters: $(STAMP) ## dead letters on the dev stack: make dead-letters ARGS="list" (or show ID, replay ID... / --all); automation's: ARGS="--function automation list"
	@$(PY) -m emulators run --operator $(PY) -m common.dead_letters $(ARGS)

access: $(STAMP)    ## the operators' CLI for callers against the dev stack, as P (default ops): make access ARGS="principal list" (P=ops-2 ARGS="change approve 1")
	@LEDGER_TOKEN=$$($(PY) -m emulators token $(or $(P),ops)) $(PY) -m common.access_cli $(ARGS)

lint: $(STAMP) $(CHECKOV_STAMP)
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy common
	@terraform fmt -check -recursive infra/terraform
	@$(MAKE) --no-print-directory checkov

checkov: $(CHECKOV_STAMP) ## checkov on infra/terraform, offline; skips only those in infra/terraform/.checkov.yaml
	@$(CHECKOV_VENV)/bin/checkov --config-file infra/terraform/.checkov.yaml --directory infra/terraform \
		--framework terraform --skip-download --compact --quiet

test: lint $(SCHEMA_STAMP) ## lint (with terraform fmt and checkov), then unit, integration and end-to-end tests on a fresh test stack
	@$(PY) -m emulators --profile test check
	@$(PY) -m pytest

openapi: $(STAMP)   ## write docs/openapi.json from the code (tests/unit/test_openapi.py fails when it is stale)
	@$(PY) -m infra.openapi

fuzz: $(STAMP)      ## Schemathesis against the functions with many examples an operation (make test runs few)
	@$(PY) -m emulators --profile test check
	@LEDGER_FUZZ_EXAMPLES=$${LEDGER_FUZZ_EXAMPLES:-200} $(PY) -m pytest tests/e2e/test_api_contract.py

model: $(STAMP)     ## the ledger against its model with many random sequences (make test runs few, the same each time)
	@$(PY) -m emulators --profile test check
	@LEDGER_MODEL_EXAMPLES=$${LEDGER_MODEL_EXAMPLES:-1000} LEDGER_MODEL_ROUNDS=$${LEDGER_MODEL_ROUNDS:-30} \
		LEDGER_MODEL_DERANDOMIZE=0 $(PY) -m pytest --timeout 0 \
		tests/integration/test_ledger_model.py tests/integration/test_ledger_linearizable.py

bench: $(STAMP)     ## benchmark the running functions and the core postings (starts the dev stack)
	@$(PY) -m emulators up --no-demo >/dev/null
	@$(PY) -m bench

soak: $(STAMP)      ## ACTIONS (700,000) mixed actions open loop at RATE (200)/s: p50-p99.9 of every request, plots (about 1 h)
	@$(PY) -m emulators up --no-demo >/dev/null
	@$(PY) -m bench.soak --write --actions $${ACTIONS:-700000} --rate $${RATE:-200} $(ARGS)

faults: $(STAMP)    ## kill (SIGKILL) and freeze (SIGSTOP) each component under traffic at RATE (30)/s; account for every request, event and ERP booking (about 10 min)
	@$(PY) -m emulators up --no-demo >/dev/null
	@$(PY) -m bench.faults --rate $${RATE:-30} --write $(ARGS)

bench-intake: $(STAMP) ## N usage records (default 1,000,000) through Pub/Sub in batches of 1,000, publish to result
	@$(PY) -m emulators up --no-demo >/dev/null
	@$(PY) -m bench.usage_intake --records $${N:-1000000}

bench-bulk: $(STAMP)  ## a 1,000,000-row import and a dormant sweep of 1,000,000 wallets, with live traffic beside them (ROWS=...)
	@$(PY) -m emulators up --no-demo >/dev/null
	@$(PY) -m bench.bulk --rows $${ROWS:-1000000}

bench-callers: $(STAMP) ## what verifying the caller, its boundary and its rate limit cost a request
	@$(PY) -m emulators up --no-demo >/dev/null
	@$(PY) -m bench.callers

bench-latency: $(STAMP) ## the HTTP mix open loop at 70 requests/s, doubling until p99 > 200 ms or errors; latency from intended send time
	@$(PY) -m emulators up --no-demo >/dev/null
	@$(PY) -m bench.openloop --write $(ARGS)

bench-background: $(STAMP) ## each background job (ERP export of 1,000,000 events, sweep, expiry, dormancy, import, chain, reconciliation) unpaced and paced, beside open-loop live traffic at 70 and 140/s
	@$(PY) -m emulators up --no-demo >/dev/null
	@$(PY) -m bench.background --write $(ARGS)

bench-scale: $(STAMP) ## a grown ledger (ENTRIES, default 50,000,000; seeded once, then reused) beside a fresh one: postings, reads, ERP export, HTTP mix, reconciliation, disk
	@$(PY) -m emulators up --no-demo >/dev/null
	@$(PY) -m bench.scale --entries $${ENTRIES:-50000000} --write $(ARGS)

bench-smoke: $(STAMP) ## the bench tools' own smoke tests that make test leaves out for time (cold starts, pgledger, cost, soak)
	@$(PY) -m pytest -q --bench-smokes -m bench_smoke tests/e2e

bench-quick: $(STAMP)
	@$(PY) -m emulators up --no-demo >/dev/null
	@$(PY) -m bench --quick

deploy: $(STAMP)    ## deploy to Google Cloud: make deploy ENV=dev (ARGS="--dry-run" prints the commands only): docs/deploy.md
	@$(PY) -m infra.deploy $(or $(ENV),$(error ENV=dev or ENV=prod)) $(ARGS)

smoke: $(STAMP)     ## against ENV's functions (make smoke ENV=dev), or PROFILE=dev|test locally: a top-up, its replay, two concurrent copies, a reused key, the balance
	@$(PY) -m infra.smoke $(if $(PROFILE),--profile $(PROFILE),--env $(or $(ENV),$(error ENV=dev, or PROFILE=dev))) $(ARGS)

teardown: $(STAMP)  ## delete ENV's deployment, data included, after asking for its project id: make teardown ENV=dev
	@$(PY) -m infra.teardown $(or $(ENV),$(error ENV=dev or ENV=prod)) $(ARGS)

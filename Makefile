# One command for each habit. Every target does its own set-up on a fresh machine.
.PHONY: bootstrap venv lock run stop status demo test test-unit test-budget-deep check format schemas bench bench-pipeline faults clean

VENV := .venv/bin
HTTP_SERVICES := intake review budget statistics
OPENAPI_DOCS := $(foreach service,$(HTTP_SERVICES),schemas/openapi/$(service).json)
# Telemetry off and no update notice: make check must not phone home.
REDOCLY := REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true tools/redocly/node_modules/.bin/redocly

bootstrap:
	@deploy/bootstrap.sh

## Only the virtualenv (from requirements.lock): enough for test-unit and check.
venv:
	@deploy/venv.sh

## Re-resolve requirements.lock from pyproject.toml (hashes for every platform).
lock: venv
	$(VENV)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --universal --generate-hashes -q -o requirements.lock

## Start everything (PostgreSQL, Kafka, SMTP sink, four services, Prometheus) and run the demo.
run: bootstrap
	@deploy/stack.sh start
	@deploy/stack.sh demo

stop:
	@deploy/stack.sh stop

status:
	@deploy/stack.sh status

demo:
	@deploy/stack.sh demo

## The whole test suite against a fresh, private Kafka broker and real PostgreSQL.
test: bootstrap
	@deploy/test.sh

## Unit tests only: no broker, no database, no Debian packages; seconds.
test-unit: venv
	@$(VENV)/pytest -m unit -q -p no:cacheprovider

## The budget state machine with 10,000 examples instead of the default 1,000.
test-budget-deep: bootstrap
	@BUDGET_STATEFUL_EXAMPLES=10000 deploy/test.sh tests/integration/test_budget_state_machine.py -q

check: venv
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy .
	$(VENV)/lint-imports
	$(VENV)/python -m schemas.generate --check
	$(VENV)/python -m schemas.compat
	node tools/asyncapi/validate.mjs schemas/asyncapi.json
	@for service in $(HTTP_SERVICES); do $(VENV)/python -m services.$$service.openapi --check || exit 1; done
	$(REDOCLY) lint --config tools/redocly/redocly.yaml --max-problems 50 $(OPENAPI_DOCS)
	$(VENV)/python -m schemas.http_compat

format: venv
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

schemas: venv
	$(VENV)/python -m schemas.generate
	@for service in $(HTTP_SERVICES); do $(VENV)/python -m services.$$service.openapi || exit 1; done

bench: bootstrap
	@deploy/test.sh bench

## The whole pipeline as portals meet it (burst, arrival ladder, CPU per application, idle cost, ceilings);
## ~6 minutes. EGOV_TEST_SLOT moves it aside, as for the tests.
bench-pipeline: bootstrap
	@deploy/test.sh bench tests/perf/bench_pipeline.py

## The fault suite (not in `make test`): seeded, replayable runs with crashes, pauses and poison.
## make faults SEED=1234 RUNS=3 [APPLICATIONS=60 FAULTS=4 SLOT=9 CLUSTER=3]; every run prints its seed.
## CLUSTER=3: a three-node KRaft cluster instead of the single broker, its leaders and controller killed too.
SEED ?= $(shell od -An -N4 -tu4 /dev/urandom | tr -d ' ')
RUNS ?= 1
APPLICATIONS ?= 60
FAULTS ?= 4
SLOT ?= 9
CLUSTER ?= 1
faults: bootstrap
	@EGOV_TEST_SLOT=$(SLOT) deploy/faults.sh --seed $(SEED) --runs $(RUNS) --applications $(APPLICATIONS) --faults $(FAULTS) \
	  --cluster $(CLUSTER)

clean: stop
	rm -rf .state

# One command for each habit. Every target does its own set-up on a fresh machine.
.PHONY: bootstrap run stop status demo test test-unit test-budget-deep check format schemas bench clean

VENV := .venv/bin

bootstrap:
	@deploy/bootstrap.sh

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

## Unit tests only: no broker, no database.
test-unit: bootstrap
	@$(VENV)/pytest -m unit -q

## The budget state machine with 10,000 examples instead of the default 1,000.
test-budget-deep: bootstrap
	@BUDGET_STATEFUL_EXAMPLES=10000 deploy/test.sh tests/integration/test_budget_state_machine.py -q

check: bootstrap
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy .
	$(VENV)/python -m schemas.generate --check
	$(VENV)/python -m schemas.compat

format: bootstrap
	$(VENV)/ruff format .
	$(VENV)/ruff check --fix .

schemas: bootstrap
	$(VENV)/python -m schemas.generate

bench: bootstrap
	@deploy/test.sh bench

clean: stop
	rm -rf .state

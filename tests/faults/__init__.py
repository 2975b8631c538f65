"""The fault suite: ``make faults SEED=... RUNS=...`` (deploy/faults.sh). Not part of ``make test``."""

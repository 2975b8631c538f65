"""Mutants: the services with one guarantee broken on purpose, so a test can show that the fault
suite's checks catch it (a checker that passes a broken system proves nothing).

The fault driver (``--mutant NAME``) puts this directory on the services' PYTHONPATH, so Python
imports ``sitecustomize`` from here at start-up and it applies the mutant named in
``EGOV_FAULTS_MUTANT``; nothing of this is importable from the services' own code.
"""

MUTANTS = (
    "skip_inbox",  # every redelivered event is handled again: the inbox no longer de-duplicates
    "offsets_first",  # the offsets are committed before the batch's transaction: a crash loses it
)

"""Statistics: live totals of the programme's money from the decision, budget and application events.

Run with ``python -m services.statistics``. A faust-streaming app: its tables (changelog-backed) are an
aggregate the changelog can rebuild, read by the open-data API. Downstream of the money path, it owns no
database and writes no domain topic.
"""

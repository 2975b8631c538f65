"""Plumbing every service needs: settings, logging, metrics, Kafka, PostgreSQL, HTTP, lifecycle.

No business logic lives here.
"""

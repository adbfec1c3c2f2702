"""Replenish backend: CoAP ingest, order worker, fulfillment and web app."""

"""Replenish backend: CoAP ingest, order engine, fulfillment and web app."""

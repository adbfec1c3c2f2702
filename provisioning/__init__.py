"""Manufacturer tooling: device identities and keys, batches, bundles."""

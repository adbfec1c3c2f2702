"""CoAP ingest: the aiocoap site and the group-commit pipeline behind it."""

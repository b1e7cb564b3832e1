"""villageami.contract

The northbound contract every other layer speaks (see docs/contract.md):

- ``obis``: OBIS codes in every common spelling (``Obis``, ``parse_obis``, ``vmrs_key_for``).
- ``vmrs``: the Village Minimum Register Set catalogue (package data ``data/vmrs.json``).
- ``envelope``: builders for telemetry, event, command, command result, gateway status and inventory.
- ``topics``: ``openami/v1/{feederId}/{gatewayId}/...`` topics, subscriptions, retained flags.
- ``validation``: JSON Schema (compiled fast path, ``fastschema``) plus semantic checks.
- ``schemas_source``: the source of the shipped JSON Schemas (``data/schemas/``, ``docs/schemas/``).

This package imports nothing else from villageami except ``villageami.errors``.
"""

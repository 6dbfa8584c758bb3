"""Tenpo's development tooling, never part of an image: the embedded stack (``stack``, behind
``make run``, ``make migrate`` and the test fixtures), development signing keys and tokens
(``keys``) and the proto generator (``protogen``, behind ``make protos``)."""

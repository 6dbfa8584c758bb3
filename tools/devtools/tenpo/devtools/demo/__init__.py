"""`make demo`: the seeds' journeys told against a running `make run`, narrated (which
touchpoint did what, which message went out); `tests/journeys/` runs the same code."""

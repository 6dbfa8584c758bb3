"""Command line of the devstack: ``python -m tenpo.devtools.stack run|migrate``."""

from tenpo.devtools.stack.runner import main

if __name__ == "__main__":
    raise SystemExit(main())

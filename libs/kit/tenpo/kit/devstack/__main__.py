"""Command line of the devstack: ``python -m tenpo.kit.devstack run|migrate``."""

from tenpo.kit.devstack.runner import main

if __name__ == "__main__":
    raise SystemExit(main())

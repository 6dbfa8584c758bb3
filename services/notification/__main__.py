"""Entry point: `python -m services.notification [serve|migrate|seed]`."""

from services.notification.app import definition
from tenpo.kit.server import main

if __name__ == "__main__":
    main(definition)

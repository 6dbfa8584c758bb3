"""Entry point: `python -m services.inventory [serve|migrate|seed]`."""

from services.inventory.app import definition
from tenpo.kit.server import main

if __name__ == "__main__":
    main(definition)

"""Entry point: `python -m services.order [serve|migrate|seed]`."""

from services.order.app import definition
from tenpo.kit.server import main

if __name__ == "__main__":
    main(definition)

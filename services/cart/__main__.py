"""Entry point: `python -m services.cart [serve|migrate|seed]`."""

from services.cart.app import definition
from tenpo.kit.server import main

if __name__ == "__main__":
    main(definition)

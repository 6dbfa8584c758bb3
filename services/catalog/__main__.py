"""Entry point: `python -m services.catalog [serve|migrate|seed|import FILE]`."""

from services.catalog.app import definition
from tenpo.kit.server import main

if __name__ == "__main__":
    main(definition)

"""Entry point: `python -m services.customer [serve|migrate|seed|bootstrap-staff]`."""

from services.customer.app import definition
from tenpo.kit.server import main

if __name__ == "__main__":
    main(definition)

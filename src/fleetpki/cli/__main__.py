"""`python -m fleetpki.cli`."""

from fleetpki.cli.main import main

main()

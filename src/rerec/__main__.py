"""``python -m rerec`` → the LightningCLI (see :mod:`rerec.cli`)."""

from rerec.cli import main

main()

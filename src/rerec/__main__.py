"""``python -m rerec`` → the ``rerec`` command (:mod:`rerec.cli`)."""

from rerec.cli import main

main()

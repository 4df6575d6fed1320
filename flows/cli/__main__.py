"""``python -m flows.cli`` is the ``goldstream`` command."""

from flows.cli import main

main()

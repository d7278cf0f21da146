"""``python -m stream.cli``: the ``stream`` command (how the tools start worker processes)."""

from stream.cli import main

main()

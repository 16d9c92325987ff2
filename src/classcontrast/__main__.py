"""``python -m classcontrast``: the command line."""

from .cli.main import main

main()

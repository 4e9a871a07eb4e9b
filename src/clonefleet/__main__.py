"""``python -m clonefleet``: the same as the ``clonefleet`` command."""

from clonefleet.cli import main

if __name__ == "__main__":
    main()

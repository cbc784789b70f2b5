"""``python -m neurofm`` runs the command-line interface (also under ``torchrun``)."""

from neurofm.core.cli import main

if __name__ == "__main__":
    raise SystemExit(main())

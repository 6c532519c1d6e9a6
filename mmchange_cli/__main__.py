"""``python -m mmchange_cli`` (used by ``torchrun -m mmchange_cli train ...``)."""

from mmchange_cli.app import main

if __name__ == "__main__":
    main()

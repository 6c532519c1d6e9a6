"""``python -m mmchange_cli`` (used by ``torchrun -m mmchange_cli train|caption|predict ...``)."""

from mmchange_cli.app import main

if __name__ == "__main__":
    main()

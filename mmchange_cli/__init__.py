"""The ``mmchange`` command-line interface: a thin Typer app over :mod:`mmchange_core`."""

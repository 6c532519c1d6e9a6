"""CLI commands. Each module defines ``register(app)`` and is discovered automatically."""

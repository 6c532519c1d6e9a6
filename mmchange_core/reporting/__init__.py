"""Pictures of results: mask overlays, error maps and plots."""

"""Order persistence."""

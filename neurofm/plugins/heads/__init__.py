"""Built-in heads (one per file)."""

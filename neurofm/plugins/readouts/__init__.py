"""Built-in readouts (one per file)."""

"""Built-in modality encoders (one per file)."""

"""Built-in plugins. Each is declared as an entry point in neurofm's ``pyproject.toml`` and found
through the registry exactly like a third-party plugin; nothing here is imported by ``neurofm.core``."""

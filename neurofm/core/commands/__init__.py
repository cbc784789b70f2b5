"""One module per ``neurofm`` sub-command. Each defines ``register(subparsers)`` which adds its parser
and sets ``func`` to a callable taking the parsed arguments and returning an exit code."""

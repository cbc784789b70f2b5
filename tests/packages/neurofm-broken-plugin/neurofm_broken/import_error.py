"""A plugin module whose import fails (a missing dependency)."""

raise ImportError(
    "neurofm_broken needs the package 'acme_missing_dependency', which is not installed"
)

"""Deliberately broken neurofm plugins."""

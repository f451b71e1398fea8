"""textkit: tiny text helpers (the patchswarm demo repository)."""

from textkit.slug import slugify

__all__ = ["slugify"]

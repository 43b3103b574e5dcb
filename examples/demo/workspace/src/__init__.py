"""shelf: a small bookmarks service."""

__version__ = "0.4.1"

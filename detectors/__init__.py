"""synthscope package."""

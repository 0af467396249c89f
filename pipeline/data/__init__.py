"""Dataset sources, readers and splits."""

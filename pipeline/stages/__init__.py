"""Thin DVC stage entry points: `python -m pipeline.stages.<stage> <dataset>`."""

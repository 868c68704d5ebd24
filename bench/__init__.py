"""Rampart's benchmark: a rendered service beside a bare FastAPI app (see bench/README.md)."""

"""The service package: `create_app` in `main` assembles it, `cli` runs it."""

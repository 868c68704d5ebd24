"""Accounts: the user model, self-service profile, export and deletion, and admin management."""

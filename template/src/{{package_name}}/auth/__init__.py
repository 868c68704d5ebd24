"""Authentication: passwords, access tokens, rotating refresh tokens and password reset."""

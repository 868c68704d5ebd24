"""Pure ASGI middleware: each class wraps `(scope, receive, send)` and does one job."""

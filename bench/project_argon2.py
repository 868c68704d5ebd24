"""Run by the rendered project's interpreter: `python project_argon2.py <package>`.

Prints the median seconds of one Argon2 hash with the project's own parameters, and the
password service's default concurrency cap, as `hash=<s> cap=<n>`.
"""

import importlib
import statistics
import sys
import time

passwords = importlib.import_module(f"{sys.argv[1]}.auth.passwords")
config = importlib.import_module(f"{sys.argv[1]}.config")
hasher = passwords.PasswordService(1)._hasher
times = []
for _ in range(5):
    started = time.perf_counter()
    hasher.hash("correct horse battery staple")
    times.append(time.perf_counter() - started)
cap = config.Settings.model_fields["password_hash_concurrency"].default
print(f"hash={statistics.median(times):.4f} cap={cap}")

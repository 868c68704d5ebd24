"""Run by the rendered project's interpreter: `python project_startup.py <package>`.

Prints the seconds the import of `<package>.main` took and those of `create_app(Settings())`,
in this fresh process, as `import=<s> create_app=<s>`.
"""

import importlib
import sys
import time

started = time.perf_counter()
main = importlib.import_module(f"{sys.argv[1]}.main")
config = importlib.import_module(f"{sys.argv[1]}.config")
imported = time.perf_counter()
main.create_app(config.Settings())
created = time.perf_counter()
print(f"import={imported - started:.4f} create_app={created - imported:.4f}")

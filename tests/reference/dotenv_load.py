"""Reference for tests/config_reference.rs: python-dotenv's own load_dotenv().

Reads a JSON list of {"text", "env"} on stdin. For each case it writes `text` to a
file (bytes as given: BOM, CR and CRLF kept), sets os.environ to exactly `env`,
calls load_dotenv(path) as the Python tool did (override=False, interpolate=True,
encoding utf-8) and prints the resulting environment. Prints a JSON list of
{"env": {...}} or {"error": "..."} with the python-dotenv version first.
"""
import json
import os
import sys
import tempfile

import dotenv
from importlib.metadata import version

cases = json.load(sys.stdin)
out = []
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, ".env")
    for case in cases:
        with open(path, "wb") as f:
            f.write(case["text"].encode("utf-8"))
        os.environ.clear()
        os.environ.update(case["env"])
        try:
            dotenv.load_dotenv(path)
            out.append({"env": dict(os.environ)})
        except Exception as e:  # the Python tool would have crashed
            out.append({"error": f"{type(e).__name__}: {e}"})
json.dump({"version": version("python-dotenv"), "results": out}, sys.stdout)

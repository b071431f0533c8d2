"""Reference for tests/config_reference.rs: SQLAlchemy's own make_url().

Reads a JSON list of URL strings on stdin and prints, for each, the parts
make_url() found (query values as lists) or the error it raised, with the
SQLAlchemy version first. make_url needs no database driver.
"""
import json
import sys

import sqlalchemy
from sqlalchemy.engine import make_url

out = []
for raw in json.load(sys.stdin):
    try:
        u = make_url(raw)
        query = {}
        for k, v in u.query.items():
            query[k] = list(v) if isinstance(v, tuple) else [v]
        out.append(
            {
                "drivername": u.drivername,
                "username": u.username,
                "password": u.password,
                "host": u.host,
                "port": u.port,
                "database": u.database,
                "query": query,
            }
        )
    except Exception as e:
        out.append({"error": f"{type(e).__name__}: {e}"})
json.dump({"version": sqlalchemy.__version__, "results": out}, sys.stdout)

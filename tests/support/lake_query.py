"""Runs SQL over a cdcd lake in DuckDB, as Athena would, and prints the result as JSON lines.

usage: lake_query.py LAKE_URL SQL_FILE

LAKE_URL is the lake root (a directory or s3://bucket/prefix). Before SQL_FILE runs, every table
directory of the lake (<root>/<schema>/<table>/) is a view "cdcd"."<schema>_<table>" over its
Parquet objects with Hive partitioning, the way `cdcd athena-ddl` names the Athena tables, so
SQL_FILE can hold the DDL's views unchanged. The last statement's rows are printed: one JSON
object per row; values become JSON without loss (decimals and big integers as strings, bytes as
{"base64": ...}, dates and times as ISO text, timestamps with time zone in UTC).

S3 settings come from the environment: CDCD_TEST_S3_ENDPOINT, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION; the httpfs extension from CDCD_TEST_DUCKDB_HTTPFS_EXT (DuckDB
cannot download it here).
"""
import base64
import datetime
import decimal
import json
import os
import re
import sys
import urllib.parse

import duckdb


def connect(lake):
    con = duckdb.connect()
    if lake.startswith("s3://"):
        con.execute(f"LOAD '{os.environ['CDCD_TEST_DUCKDB_HTTPFS_EXT']}'")
        endpoint = urllib.parse.urlparse(os.environ["CDCD_TEST_S3_ENDPOINT"])
        con.execute(f"SET s3_endpoint='{endpoint.netloc}'")
        con.execute(f"SET s3_use_ssl={'true' if endpoint.scheme == 'https' else 'false'}")
        con.execute("SET s3_url_style='path'")
        con.execute(f"SET s3_access_key_id='{os.environ['AWS_ACCESS_KEY_ID']}'")
        con.execute(f"SET s3_secret_access_key='{os.environ['AWS_SECRET_ACCESS_KEY']}'")
        con.execute(f"SET s3_region='{os.environ.get('AWS_REGION', 'us-east-1')}'")
    return con


def tables(con, lake):
    """(schema, table) of every table directory holding objects."""
    pattern = lake.rstrip("/") + "/*/*/*/*/*/*/*.parquet"
    files = [r[0] for r in con.execute("SELECT file FROM glob(?)", [pattern]).fetchall()]
    found = set()
    for f in files:
        parts = f[len(lake.rstrip("/")) + 1:].split("/")
        found.add((parts[0], parts[1]))
    return sorted(found)


def athena_name(name):
    return re.sub(r"[^a-z0-9]", "_", name.lower())


def to_json(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, int) and abs(value) > 2**53:
            return str(value)
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return value.isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    raise TypeError(f"no JSON form for {type(value)}: {value!r}")


def main():
    lake, sql_file = sys.argv[1], sys.argv[2]
    con = connect(lake)
    con.execute("SET TimeZone='UTC'")
    con.execute('CREATE SCHEMA IF NOT EXISTS "cdcd"')
    for schema, table in tables(con, lake):
        location = f"{lake.rstrip('/')}/{schema}/{table}/*/*/*/*/*.parquet"
        con.execute(
            f'CREATE VIEW "cdcd"."{athena_name(schema + "_" + table)}" AS '
            f"SELECT * FROM read_parquet('{location}', hive_partitioning = true, union_by_name = true)"
        )
    statements = [s for s in open(sql_file).read().split(";") if s.strip()]
    for statement in statements[:-1]:
        con.execute(statement)
    cursor = con.execute(statements[-1])
    names = [d[0] for d in cursor.description]
    for row in cursor.fetchall():
        print(json.dumps({n: to_json(v) for n, v in zip(names, row)}, ensure_ascii=False))


if __name__ == "__main__":
    main()

"""Reads a files destination's exports as a tool that imports files would: the manifest, then
the full export's files and the change files in its order, each loaded with DuckDB
(read_csv / read_json), a later row of a profile replacing an earlier one and a deleted row
removing it. Prints the result as JSON: {profile_id: row}, and the manifest.

    fold_exports.py EXPORT_FOLDER
"""

import json
import os
import sys

import duckdb

folder = sys.argv[1]
root = folder.split("exports/workspace=")[0]
with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
    manifest = json.load(f)

con = duckdb.connect()
files = (manifest["full"] or {"files": []})["files"] + manifest["changes"]
profiles = {}
for entry in files:
    path = os.path.join(root, entry["key"])
    if manifest["format"] == "csv":
        relation = con.sql(
            "SELECT * FROM read_csv(?, header = true, all_varchar = true)", params=[path]
        ) if entry["rows"] else None
    else:
        relation = con.sql(
            "SELECT * FROM read_json(?, format = 'newline_delimited')", params=[path]
        ) if entry["rows"] else None
    if relation is None:
        continue
    columns = relation.columns
    for values in relation.fetchall():
        row = dict(zip(columns, values))
        deleted = row["deleted"] in (True, "true")
        if deleted:
            profiles.pop(row["profile_id"], None)
        else:
            profiles[row["profile_id"]] = row

print(json.dumps({"profiles": profiles, "manifest": manifest}, default=str))

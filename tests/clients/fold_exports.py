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


def fold():
    """The manifest and the profiles its files hold; None when a file it names is gone (a newer
    manifest retired it since it was read): the caller reads the manifest again."""
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    con = duckdb.connect()
    files = (manifest["full"] or {"files": []})["files"] + manifest["changes"]
    profiles = {}
    for entry in files:
        path = os.path.join(root, entry["key"])
        if not entry["rows"]:
            continue
        if not os.path.exists(path):
            return None
        if manifest["format"] == "csv":
            query = "SELECT * FROM read_csv(?, header = true, all_varchar = true)"
        else:
            query = "SELECT * FROM read_json(?, format = 'newline_delimited')"
        relation = con.sql(query, params=[path])
        columns = relation.columns
        for values in relation.fetchall():
            row = dict(zip(columns, values))
            if row["deleted"] in (True, "true"):
                profiles.pop(row["profile_id"], None)
            else:
                profiles[row["profile_id"]] = row
    return manifest, profiles


for attempt in range(5):
    folded = fold()
    if folded is not None:
        break
else:
    sys.exit("the manifest kept naming files that are gone")
manifest, profiles = folded

print(json.dumps({"profiles": profiles, "manifest": manifest}, default=str))

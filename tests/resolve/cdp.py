"""Baselines for `braid resolve` on generated CDP records (`cdp-records`, see tests/src/cdp.rs).

    python cdp.py exact FILE     connected components of records sharing an email, phone or
                                 device id (normalised as braid does: lower case; phones on
                                 their last nine digits), no guard of any kind
    python cdp.py splink FILE    Splink (DuckDB) with its standard comparisons for such columns

Each prints one JSON line: seconds, pairwise precision, recall, F1, largest cluster, against the
`person` column.
"""

import json
import re
import sys
import time
from collections import Counter


def pair_counts(predicted, truth):
    """Pairwise true positives, predicted and actual pairs of two label lists."""

    def pairs(counter):
        return sum(n * (n - 1) // 2 for n in counter.values())

    both = Counter(zip(predicted, truth))
    return pairs(both), pairs(Counter(predicted)), pairs(Counter(truth))


def report(tool, path, seconds, predicted, truth):
    hit, got, want = pair_counts(predicted, truth)
    precision = hit / got if got else 0.0
    recall = hit / want if want else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    print(json.dumps({"tool": tool, "file": path.rsplit("/", 1)[-1], "records": len(truth),
                      "seconds": round(seconds, 3), "precision": round(precision, 4),
                      "recall": round(recall, 4), "f1": round(f1, 4),
                      "largest_cluster": max(Counter(predicted).values())}))


def phone(value):
    return re.sub(r"\D", "", value)[-9:]


def exact(path):
    import csv

    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    started = time.perf_counter()
    parent = list(range(len(rows)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    first = {}
    for index, row in enumerate(rows):
        for key, value in (("email", row["email"].strip().lower()), ("phone", phone(row["phone"])),
                           ("device", row["device_id"].strip().lower())):
            if not value:
                continue
            other = first.setdefault((key, value), index)
            parent[find(index)] = find(other)
    labels = [find(i) for i in range(len(rows))]
    report("exact components", path, time.perf_counter() - started, labels, [r["person"] for r in rows])


def splink(path):
    import pandas as pd
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI

    frame = pd.read_csv(path, dtype=str).fillna("")
    truth = list(frame["person"])
    # What a Splink user cleans first: case, and phones written in several ways.
    for column in ("first_name", "last_name", "email", "street", "city"):
        frame[column] = frame[column].str.strip().str.lower()
    frame["phone"] = frame["phone"].map(phone)
    data = frame.drop(columns=["person", "source"]).replace("", None)

    started = time.perf_counter()
    db = DuckDBAPI()
    table = db.register(data, table_name="records")
    settings = SettingsCreator(
        unique_id_column_name="record_id",
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=[
            block_on("email"),
            block_on("phone"),
            block_on("device_id"),
            block_on("first_name", "last_name"),
            block_on("last_name", "postcode"),
        ],
        comparisons=[
            cl.NameComparison("first_name"),
            cl.NameComparison("last_name"),
            cl.EmailComparison("email"),
            cl.ExactMatch("phone"),
            cl.ExactMatch("device_id"),
            cl.JaroWinklerAtThresholds("street", [0.9, 0.7]),
            cl.ExactMatch("city"),
            cl.LevenshteinAtThresholds("postcode", [1, 2]),
        ],
    )
    linker = Linker(table, settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("email"), block_on("phone"), block_on("device_id")], recall=0.7
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("first_name", "last_name"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("email"))
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=0.9
    ).as_pandas_dataframe()
    seconds = time.perf_counter() - started
    cluster_of = dict(zip(clusters["record_id"], clusters["cluster_id"]))
    labels = [cluster_of.get(r, r) for r in frame["record_id"]]
    report("splink", path, seconds, labels, truth)


if __name__ == "__main__":
    {"exact": exact, "splink": splink}[sys.argv[1]](sys.argv[2])

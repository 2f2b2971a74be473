"""Sends one event of each Spec type with segment-analytics-python, unchanged but for the host."""
import os
import sys

import segment.analytics as analytics

run = os.environ["BRAID_RUN"]
errors = []
analytics.write_key = os.environ["BRAID_WRITE_KEY"]
analytics.host = os.environ["BRAID_URL"]
analytics.gzip = os.environ.get("BRAID_GZIP") == "1"
analytics.on_error = lambda error, batch: errors.append(repr(error))

user = f"py-seg-{run}"
analytics.identify(user, {"email": f"{user}@example.com", "plan": "pro"})
analytics.track(user, "Order Completed", {"revenue": 42.5, "currency": "EUR"})
analytics.page(user, "Docs", "Install", {"url": "https://shop.example/docs?utm_source=news"})
analytics.screen(user, "App", "Home")
analytics.group(user, f"grp-{run}", {"name": "Acme"})
analytics.alias(f"prev-{run}", user)
analytics.track(anonymous_id=f"anon-{run}", event="Anonymous Click")
analytics.flush()
analytics.shutdown()
if errors:
    sys.exit("delivery failed: " + "; ".join(errors))
print("sent 7")

"""Sends a shop's customers with segment-analytics-python for the audiences test: orders (two
or more for some), plans, and sign-up dates; one customer signed up just under 7 days ago, so
that they leave the "new sign-ups" audience a few seconds after the events land."""
import datetime
import os
import sys

import segment.analytics as analytics

run = os.environ["BRAID_RUN"]
errors = []
analytics.write_key = os.environ["BRAID_WRITE_KEY"]
analytics.host = os.environ["BRAID_URL"]
analytics.on_error = lambda error, batch: errors.append(repr(error))

now = datetime.datetime.now(datetime.timezone.utc)
ageing = int(os.environ.get("BRAID_AGEING_SECONDS", "12"))
for i in range(6):
    user = f"aud-{run}-{i}"
    signed_up = now - datetime.timedelta(days=1)
    if i == 0:
        signed_up = now - datetime.timedelta(days=7) + datetime.timedelta(seconds=ageing)
    traits = {
        "plan": "pro" if i % 2 == 0 else "free",
        "signed_up_at": signed_up.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    analytics.identify(user, traits)
    # Customers 0, 1, 2 order twice, 3 once, 4 and 5 never.
    for _ in range(2 if i < 3 else 1 if i == 3 else 0):
        analytics.track(user, "Order Completed", {"revenue": 10 + i, "currency": "EUR"})
analytics.flush()
analytics.shutdown()
if errors:
    sys.exit("delivery failed: " + "; ".join(errors))
print("sent 13")

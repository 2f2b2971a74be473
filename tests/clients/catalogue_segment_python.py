"""Sends a shop's events with segment-analytics-python for the data map: a revenue that is
sometimes a string, a near-duplicate event name, an email inside a note."""
import os
import sys

import segment.analytics as analytics

run = os.environ["BRAID_RUN"]
errors = []
analytics.write_key = os.environ["BRAID_WRITE_KEY"]
analytics.host = os.environ["BRAID_URL"]
analytics.on_error = lambda error, batch: errors.append(repr(error))

for i in range(40):
    user = f"cat-{run}-{i % 10}"
    revenue = "12.50" if i in (7, 19) else 10 + i
    analytics.track(user, "Order Completed", {"revenue": revenue, "currency": "EUR", "order_id": f"o-{i}"})
for i in range(5):
    analytics.track(f"cat-{run}-{i}", "order_completed", {"revenue": 3})
for i in range(10):
    # contact repeats the email: the data map proposes it as an identifier.
    analytics.identify(f"cat-{run}-{i}", {"email": f"shopper{i}@mail.example", "contact": f"shopper{i}@mail.example", "plan": "pro" if i % 2 else "free"})
analytics.track(f"cat-{run}-0", "Support Ticket", {"note": "please reply to jane.doe@mail.example"})
analytics.flush()
analytics.shutdown()
if errors:
    sys.exit("delivery failed: " + "; ".join(errors))
print("sent 56")

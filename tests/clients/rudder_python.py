"""Sends one event of each Spec type with rudder-sdk-python, unchanged but for the data plane URL."""
import os
import sys

import rudderstack.analytics as rudder_analytics

run = os.environ["BRAID_RUN"]
errors = []
rudder_analytics.write_key = os.environ["BRAID_WRITE_KEY"]
rudder_analytics.dataPlaneUrl = os.environ["BRAID_URL"]
rudder_analytics.gzip = os.environ.get("BRAID_GZIP") == "1"
rudder_analytics.on_error = lambda error, batch: errors.append(repr(error))

user = f"py-rud-{run}"
rudder_analytics.identify(user, {"email": f"{user}@example.com", "plan": "pro"})
rudder_analytics.track(user, "Order Completed", {"revenue": 42.5, "currency": "EUR"})
rudder_analytics.page(user, "Docs", "Install", {"url": "https://shop.example/docs?utm_source=news"})
rudder_analytics.screen(user, "App", "Home")
rudder_analytics.group(user, f"grp-{run}", {"name": "Acme"})
rudder_analytics.alias(f"prev-{run}", user)
rudder_analytics.track(anonymous_id=f"anon-{run}", event="Anonymous Click")
rudder_analytics.flush()
rudder_analytics.shutdown()
if errors:
    sys.exit("delivery failed: " + "; ".join(errors))
print("sent 7")

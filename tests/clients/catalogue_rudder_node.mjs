// Sends a second source's events with @rudderstack/rudder-sdk-node for the data map: the same
// event under a near-duplicate name, and page views.
import Analytics from '@rudderstack/rudder-sdk-node';

const run = process.env.BRAID_RUN;
const errors = [];
const client = new Analytics(process.env.BRAID_WRITE_KEY, {
  dataPlaneUrl: process.env.BRAID_URL,
  logLevel: 'error',
  errorHandler: (error) => errors.push(String(error)),
});

for (let i = 0; i < 10; i += 1) {
  const userId = `cat-${run}-${i}`;
  client.track({ userId, event: 'Order Complete', properties: { revenue: 5 + i, coupon: 'SPRING' } });
  client.page({ userId, name: 'Home', properties: { url: `https://shop.example/?p=${i}` } });
}
await client.flush();
if (errors.length) {
  console.error(`delivery failed: ${errors.join('; ')}`);
  process.exit(1);
}
console.log('sent 20');

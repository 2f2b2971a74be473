// Sends one event of each Spec type with @rudderstack/rudder-sdk-node (gzip on, its default),
// unchanged but for the data plane URL.
import Analytics from '@rudderstack/rudder-sdk-node';

const run = process.env.BRAID_RUN;
const errors = [];
const client = new Analytics(process.env.BRAID_WRITE_KEY, {
  dataPlaneUrl: process.env.BRAID_URL,
  logLevel: 'error',
  errorHandler: (error) => errors.push(String(error)),
});

const userId = `node-rud-${run}`;
client.identify({ userId, context: { traits: { email: `${userId}@example.com`, plan: 'pro' } } });
client.track({ userId, event: 'Order Completed', properties: { revenue: 42.5, currency: 'EUR' } });
client.page({ userId, category: 'Docs', name: 'Install', properties: { url: 'https://shop.example/docs?utm_source=news' } });
client.screen({ userId, name: 'Home' });
client.group({ userId, groupId: `grp-${run}`, traits: { name: 'Acme' } });
client.alias({ userId, previousId: `prev-${run}` });
client.track({ anonymousId: `anon-${run}`, event: 'Anonymous Click' });
await client.flush();
if (errors.length) {
  console.error(`delivery failed: ${errors.join('; ')}`);
  process.exit(1);
}
console.log('sent 7');

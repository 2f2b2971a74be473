// Sends one event of each Spec type with @segment/analytics-node, unchanged but for the host.
import { Analytics } from '@segment/analytics-node';

const run = process.env.BRAID_RUN;
const errors = [];
const analytics = new Analytics({ writeKey: process.env.BRAID_WRITE_KEY, host: process.env.BRAID_URL, maxRetries: 3 });
analytics.on('error', (error) => errors.push(String(error?.reason ?? error)));

const userId = `node-seg-${run}`;
analytics.identify({ userId, traits: { email: `${userId}@example.com`, plan: 'pro' } });
analytics.track({ userId, event: 'Order Completed', properties: { revenue: 42.5, currency: 'EUR' } });
analytics.page({ userId, category: 'Docs', name: 'Install', properties: { url: 'https://shop.example/docs?utm_source=news' } });
analytics.screen({ userId, name: 'Home' });
analytics.group({ userId, groupId: `grp-${run}`, traits: { name: 'Acme' } });
analytics.alias({ userId, previousId: `prev-${run}` });
analytics.track({ anonymousId: `anon-${run}`, event: 'Anonymous Click' });
await analytics.closeAndFlush({ timeout: 20000 });
if (errors.length) {
  console.error(`delivery failed: ${errors.join('; ')}`);
  process.exit(1);
}
console.log('sent 7');

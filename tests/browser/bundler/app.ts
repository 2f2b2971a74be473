// A site's own code using braid-sdk from npm, as a bundler sees it: the browser test bundles it
// with esbuild and runs it in Chromium; `tsc` checks it against the package's types.
import { load, type Braid, type SourceMiddleware } from 'braid-sdk';

declare global {
  interface Window {
    bundled: Promise<Braid>;
  }
}

const tag: SourceMiddleware = ({ payload, next }) => {
  payload.obj.context.bundler = 'esbuild';
  next(payload);
};

window.bundled = load(document.body.dataset.key ?? '', { flushAt: 2, autoPage: false }).then((braid) => {
  braid.addSourceMiddleware(tag);
  braid.identify('bundled-user', { plan: 'team' });
  braid.track('Bundled Event', { items: 2, tags: ['a', 'b'] }, { context: { app: { name: 'shop' } } });
  return braid;
});

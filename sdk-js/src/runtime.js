// The browser side of the Braid SDK: the analytics.js API, page context, storage, timers,
// cross-tab locking and fetch. Queueing, stamping, batching and retry decisions are made by the
// wasm Collector (collector-wasm); this file only carries out what it decides.
import init, { Collector } from '../build/braid_collector.js';

// Both set by build.mjs.
const VERSION = __BRAID_VERSION__;
const WASM_FILE = __BRAID_WASM_FILE__;
// Keepalive requests share a 64 KB budget per page; keep some room for headers.
const KEEPALIVE_BYTES = 60000;
const RETRY = 2;
// How long the events of a batch sent by a page that went away are held back, waiting for the
// server's receipt cookie, before they are sent again.
const HOLD = 10000;

const win = typeof window === 'object' ? window : undefined;
const nav = typeof navigator === 'object' ? navigator : {};

/** Loads the SDK and returns the ready instance. */
export async function load(writeKey, options = {}) {
  await init({ module_or_path: options.wasmUrl || new URL(WASM_FILE, import.meta.url) });
  const braid = new Braid(writeKey, options);
  braid._start();
  return braid;
}

const isObj = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

// Reads and writes that never throw: storage can be full, disabled or blocked.
function tryStorage() {
  try {
    const ls = win.localStorage;
    ls.setItem('braid.test', '1');
    ls.removeItem('braid.test');
    return ls;
  } catch {
    return null;
  }
}

class Braid {
  constructor(writeKey, options) {
    this.writeKey = writeKey;
    const o = (this.options = {
      apiHost: new URL(import.meta.url).origin,
      flushAt: 20,
      flushInterval: 5000,
      maxQueue: 1000,
      sessionTimeout: 30 * 60000,
      cookieDomain: undefined,
      cookieless: false,
      consent: 'granted',
      consentCategory: 'analytics',
      honorGPC: false,
      autoPage: true,
      trackHistory: true,
      ...options,
    });
    this._debug = false;
    this._middleware = [];
    const seed = new Uint32Array(4);
    crypto.getRandomValues(seed);
    this.c = new Collector(o.flushAt, o.flushInterval, o.maxQueue, o.sessionTimeout, ...seed);
    this.gpc = o.honorGPC && nav.globalPrivacyControl === true;
    // Consent 'pending': nothing is stored or sent until setConsent() grants it.
    this.consent = o.consent === 'pending' ? null : o.consent !== 'denied';
    this.categories = null;
    this.memoryOnly = o.cookieless || this.gpc;
    this.ls = this.memoryOnly ? null : tryStorage();
    this.prefix = 'braid.' + writeKey + '.';
    this.timer = 0;
    this.tab = this.c.uuid();
    this.traits = {};
    this._loadIds();
  }

  // ---- identity -------------------------------------------------------------------------

  _canStore() {
    return this.consent === true && !this.memoryOnly;
  }

  _get(name) {
    return this.ls ? this.ls.getItem(this.prefix + name) : null;
  }

  _set(name, value) {
    if (!this._canStore() || !this.ls) return;
    try {
      if (value === null) this.ls.removeItem(this.prefix + name);
      else this.ls.setItem(this.prefix + name, value);
    } catch (e) {
      this._log('storage write failed', e);
    }
  }

  _cookie(value) {
    if (this._canStore()) this._writeCookie(value, 365 * 86400);
  }

  // The SDK's own id cookie; max-age 0 removes it.
  _writeCookie(value, maxAge) {
    const domain = this.options.cookieDomain ? '; domain=' + this.options.cookieDomain : '';
    const secure = win.location.protocol === 'https:' ? '; secure' : '';
    document.cookie =
      'braid_anon_id=' + encodeURIComponent(value) + '; path=/; max-age=' + maxAge + '; samesite=lax' + domain + secure;
  }

  _loadIds() {
    const stored = this.memoryOnly ? null : this._get('aid') || cookie('braid_anon_id');
    const anon = stored || this.c.anonymousId();
    let user = '';
    if (!this.memoryOnly) {
      user = this._get('uid') || '';
      try {
        this.traits = JSON.parse(this._get('traits') || '{}') || {};
      } catch {
        this.traits = {};
      }
    }
    this.c.setIds(anon, user);
    this.anon = anon;
    this.uid = user;
  }

  _setIds(anon, user) {
    this.anon = anon;
    this.uid = user || '';
    this.c.setIds(anon, this.uid);
    this._storeIds();
  }

  _storeIds() {
    this._set('aid', this.anon);
    this._set('uid', this.uid || null);
    this._set('traits', JSON.stringify(this.traits));
    this._cookie(this.anon);
  }

  // ---- the analytics.js API ---------------------------------------------------------------

  track(event, properties, options, callback) {
    return this._call({ type: 'track', event, properties: properties || {} }, options, callback);
  }

  identify(userId, traits, options, callback) {
    if (isObj(userId)) [userId, traits, options, callback] = [null, userId, traits, options];
    if (typeof traits === 'function') [traits, callback] = [{}, traits];
    if (userId != null && String(userId) !== this.uid) {
      // A different user on this device: traits of the previous one do not carry over.
      if (this.uid) this.traits = {};
      this._setIds(this.anon, String(userId));
    }
    Object.assign(this.traits, traits || {});
    this._storeIds();
    return this._call({ type: 'identify', traits: { ...this.traits } }, options, callback);
  }

  page(category, name, properties, options, callback) {
    return this._call(this._pageArgs('page', category, name, properties), options, callback);
  }

  screen(category, name, properties, options, callback) {
    return this._call(this._pageArgs('screen', category, name, properties), options, callback);
  }

  _pageArgs(type, category, name, properties) {
    // page(), page(name), page(name, props), page(category, name), page(category, name, props)
    if (isObj(category)) [category, name, properties] = [null, null, category];
    else if (isObj(name)) [category, name, properties] = [null, category, name];
    else if (name == null && category != null) [category, name] = [null, category];
    const body = { type, properties: { ...(type === 'page' ? this._pageProps().props : {}), ...(properties || {}) } };
    if (name != null) body.name = String(name);
    if (category != null) {
      body.category = String(category);
      body.properties.category = body.category;
    }
    if (name != null) body.properties.name = body.name;
    return body;
  }

  group(groupId, traits, options, callback) {
    return this._call({ type: 'group', groupId: String(groupId), traits: traits || {} }, options, callback);
  }

  alias(userId, previousId, options, callback) {
    const previous = previousId != null ? String(previousId) : this.uid || this.anon;
    this._setIds(this.anon, String(userId));
    return this._call({ type: 'alias', previousId: previous }, options, callback);
  }

  reset() {
    this.traits = {};
    this._setIds(this.c.uuid(), '');
  }

  user() {
    return { id: () => this.uid || null, anonymousId: () => this.anon, traits: () => ({ ...this.traits }) };
  }

  ready(callback) {
    if (typeof callback === 'function') callback();
    return Promise.resolve(this);
  }

  debug(on) {
    this._debug = on !== false;
  }

  addSourceMiddleware(fn) {
    this._middleware.push(fn);
    return this;
  }

  /** `setConsent({analytics: true, advertising: false})`, or `true`/`false` for all. */
  setConsent(categories) {
    if (typeof categories === 'boolean') categories = { [this.options.consentCategory]: categories };
    this.categories = { ...(this.categories || {}), ...categories };
    const granted = this.categories[this.options.consentCategory] === true;
    const was = this.consent;
    this.consent = granted;
    if (!granted) {
      // Withdrawn or refused: forget what waits, what is stored and the cookie.
      for (const key of this.c.clear().split(' ')) if (key) this._remove(key);
      this.consent = false;
      if (this.ls) {
        for (const key of Object.keys(this.ls)) if (key.startsWith(this.prefix)) this.ls.removeItem(key);
      }
      this._writeCookie('', 0);
      return;
    }
    if (was !== true) {
      // Granted now: store what waited in memory, and the ids.
      this._storeIds();
      const entries = this.c.entries();
      for (let i = 0; i < entries.length; i += 2) this._store(entries[i], entries[i + 1]);
      this._schedule(0);
    }
  }

  /** Sends everything queued now; resolves when the queue is empty or a retry is pending. */
  flush() {
    return this._flush(true);
  }

  // ---- events -------------------------------------------------------------------------------

  _call(body, options, callback) {
    if (typeof options === 'function') [options, callback] = [undefined, options];
    options = options || {};
    const context = this._context(options);
    for (const key of ['timestamp', 'messageId', 'anonymousId', 'integrations']) {
      if (options[key] != null) body[key] = options[key] instanceof Date ? options[key].toISOString() : options[key];
    }
    if (options.userId != null) body.userId = options.userId;
    const obj = { ...body, context };
    const chain = this._middleware.slice();
    const next = (payload) => {
      if (!payload || !payload.obj) return this._log('middleware dropped an event', obj);
      const fn = chain.shift();
      if (fn) {
        try {
          fn({ payload, next, integrations: {} });
        } catch (e) {
          this._log('middleware failed', e);
          next(payload);
        }
      } else this._enqueue(payload.obj);
    };
    next({ obj, type: () => obj.type });
    if (typeof callback === 'function') setTimeout(callback, 0);
    return Promise.resolve({ event: obj });
  }

  _enqueue(obj) {
    if (this.consent === false) return this._log('consent refused: event discarded', obj);
    const { context, ...body } = obj;
    const now = Date.now();
    let json;
    try {
      json = this.c.enqueue(JSON.stringify(body), JSON.stringify(context || {}), now);
    } catch (e) {
      return this._log('event could not be serialised', e);
    }
    if (typeof json === 'number') return this._log(json === 2 ? 'event larger than 32 KB dropped' : 'event is not an object', obj);
    if (this.consent === true) {
      this._store(this.c.lastKey(), json);
      const evicted = this.c.takeEvicted();
      if (evicted) for (const key of evicted.split(' ')) this._remove(key);
    }
    this._log('queued', json);
    this._schedule(this.c.nextWake(now));
  }

  // What does not change during a page's life is read once; the page part when the URL or
  // title changes (track() is on the hot path: ~1 µs here, not the ~70 µs of reading it all).
  _context(options) {
    if (!this.device) {
      let timezone;
      try {
        timezone = Intl.DateTimeFormat().resolvedOptions().timeZone;
      } catch {}
      this.device = {
        library: { name: 'braid-sdk', version: VERSION },
        userAgent: nav.userAgent,
        locale: nav.language,
        timezone,
        screen: { width: win.screen.width, height: win.screen.height, density: win.devicePixelRatio },
      };
    }
    const page = this._pageProps();
    const ctx = { ...this.device, page: page.props };
    if (page.campaign) ctx.campaign = page.campaign;
    if (this.categories) ctx.consent = { categoryPreferences: { ...this.categories } };
    if (this.gpc) ctx.gpc = true;
    if (isObj(options.context)) Object.assign(ctx, options.context);
    return ctx;
  }

  _pageProps() {
    const loc = win.location;
    const at = loc.href + '\n' + document.title + '\n' + document.referrer;
    if (this.pageAt === at) return this.pageCache;
    const canonical = document.querySelector('link[rel="canonical"]');
    const href = canonical ? canonical.href : loc.href;
    const campaign = {};
    new URLSearchParams(loc.search).forEach((value, key) => {
      if (key.startsWith('utm_')) campaign[key === 'utm_campaign' ? 'name' : key.slice(4)] = value;
    });
    this.pageAt = at;
    this.pageCache = {
      props: {
        path: canonical ? new URL(href).pathname : loc.pathname,
        referrer: document.referrer,
        search: loc.search,
        title: document.title,
        url: href.split('#')[0],
      },
      campaign: Object.keys(campaign).length ? campaign : null,
    };
    return this.pageCache;
  }

  // ---- storage ------------------------------------------------------------------------------

  _store(key, json) {
    if (!this.ls) return;
    try {
      this.ls.setItem(this.prefix + 'q.' + key, json);
    } catch (e) {
      // Full: the event stays in memory and is still sent from this page.
      this._log('storage full: event kept in memory only', e);
    }
  }

  _remove(key) {
    if (this.ls) this.ls.removeItem(this.prefix + 'q.' + key);
  }

  // Sequence and session are shared by the tabs of the device through storage: saved when a
  // tab sends or is hidden (not on every call: a storage write costs ~15 µs), read at start
  // and before sending; another tab's new events move the sequence on at once (storage events).
  _saveState() {
    this._set('state', this.c.seq() + ' ' + this.c.sessionId() + ' ' + this.c.lastActivity());
  }

  _syncState() {
    const state = this._get('state');
    if (state && state !== this._state) {
      this._state = state;
      const [seq, sid, last] = state.split(' ').map(Number);
      this.c.setState(seq || 0, sid || 0, last || 0);
    }
  }

  // Takes what other tabs (and earlier pages) stored into the queue, forgets what they sent.
  // A batch a page sent as it went away has a record `sent.<id>`: if the server's receipt
  // cookie names it, its events arrived and are removed; for a while after it was sent its
  // events are held back (the request may still be under way); then they are sent again.
  _syncQueue() {
    if (!this.ls || !this._canStore() || !this.c.beginSync()) return;
    const queue = this.prefix + 'q.';
    const sent = this.prefix + 'sent.';
    const receipt = cookie('braid_ack');
    const held = new Set();
    const now = Date.now();
    for (const key of Object.keys(this.ls)) {
      if (!key.startsWith(sent)) continue;
      const [at, ...keys] = (this.ls.getItem(key) || '0').split(' ');
      if (key.slice(sent.length) === receipt) {
        for (const k of keys) this._remove(k);
        this.ls.removeItem(key);
      } else if (now - Number(at) < HOLD) {
        for (const k of keys) held.add(k);
        this._schedule(HOLD);
      } else this.ls.removeItem(key);
    }
    for (const key of Object.keys(this.ls)) {
      if (key.startsWith(queue) && !held.has(key.slice(queue.length))) {
        const json = this.ls.getItem(key);
        if (json != null) this.c.restore(key.slice(queue.length), json);
      }
    }
    this.c.endSync();
  }

  // ---- delivery -----------------------------------------------------------------------------

  // One timer, moved only to an earlier time.
  _schedule(wait) {
    if (wait < 0 || this.consent !== true) return;
    const at = Date.now() + wait;
    if (this.timer && this.wakeAt <= at) return;
    clearTimeout(this.timer);
    this.wakeAt = at;
    this.timer = setTimeout(() => {
      this.timer = 0;
      this._flush(false);
    }, wait);
  }

  // One tab at a time sends from the shared queue: a Web Lock (released if the tab dies), or
  // without Web Locks a lease in storage that expires.
  // `keepalive`: the page is being hidden and may be gone before the answer (the browser
  // finishes such requests, up to 64 KB in flight per page).
  async _flush(force, keepalive = false) {
    if (this.consent !== true) return;
    const run = async (lock) => {
      if (lock === null) return this._schedule(1000);
      this._syncState();
      this._saveState();
      this._syncQueue();
      await this._send(force, keepalive);
    };
    if (nav.locks && this.ls) return nav.locks.request('braid.flush.' + this.writeKey, { ifAvailable: true }, run);
    if (!this._lease()) return this._schedule(1000);
    try {
      await run(true);
    } finally {
      this._set('lease', null);
    }
  }

  // The fallback lock: a lease in storage that a dead tab's claim loses after 30 s.
  _lease() {
    if (!this.ls) return true;
    const now = Date.now();
    const [owner, until] = (this._get('lease') || ' 0').split(' ');
    if (owner !== this.tab && Number(until) > now) return false;
    this._set('lease', this.tab + ' ' + (now + 30000));
    return this._get('lease').startsWith(this.tab);
  }

  async _send(force, keepalive) {
    for (;;) {
      const now = Date.now();
      // A flush sends whatever waits, but still respects a retry delay.
      if (!(force ? this.c.size() > 0 && !this.c.backingOff(now) : this.c.due(now))) break;
      const body = this.c.takeBatch(now, keepalive ? KEEPALIVE_BYTES : 480000);
      if (!body) break;
      const keys = this.c.inFlight().split(' ');
      const id = this._record(keys);
      let status = 0;
      let retryAfter = -1;
      try {
        const response = await this._post(id, body, keepalive);
        status = response.status;
        retryAfter = retryAfterMs(response.headers.get('Retry-After'));
        if (response.ok) this._adoptServerId(response);
      } catch (e) {
        this._log('network error', e);
      }
      const outcome = this.c.settle(status, retryAfter, Date.now());
      if (outcome !== RETRY) for (const key of keys) this._remove(key);
      this._set('sent.' + id, null);
      this._log(outcome === RETRY ? 'will retry batch' : outcome === 1 ? 'delivered batch' : 'server refused batch', status);
      if (outcome === RETRY) break;
    }
    this._schedule(this.c.nextWake(Date.now()));
  }

  // Notes which events a batch carries until its answer is in (see _syncQueue).
  _record(keys) {
    const id = this.c.uuid();
    this._set('sent.' + id, Date.now() + ' ' + keys.join(' '));
    return id;
  }

  _post(id, body, keepalive) {
    // The write key travels in the body: no Authorization header, so no CORS preflight. `ack`
    // asks for a receipt cookie, for when this page is gone before the answer comes. Without
    // storage (cookieless, GPC) no cookie is sent or accepted at all.
    const stored = this._canStore() && this.ls;
    return fetch(this.options.apiHost + '/v1/batch' + (stored ? '?ack=' + id : ''), {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain' },
      body: '{"writeKey":' + JSON.stringify(this.writeKey) + ',' + body.slice(1),
      credentials: stored ? 'include' : 'omit',
      keepalive,
    });
  }

  async _adoptServerId(response) {
    // The edge's HttpOnly cookie outlives script storage (Safari caps it at 7 days): when the
    // server answers with an id, it is the device's id from now on.
    try {
      const answer = await response.json();
      const id = answer && answer.anonymousId;
      if (typeof id === 'string' && id && id !== this.anon) this._setIds(id, this.uid);
    } catch {}
  }

  // The page is going away: hand what waits to the browser in one keepalive request. Its events
  // stay stored with a record of the batch; the next page sends them again unless the server's
  // receipt cookie shows they arrived (see _syncQueue).
  _unload() {
    if (this.consent !== true || this.c.size() === 0) return;
    this._syncQueue();
    const body = this.c.takeBatch(Date.now(), KEEPALIVE_BYTES);
    if (!body) return;
    const keys = this.c.inFlight().split(' ');
    this.c.abandonInFlight();
    const id = this._record(keys);
    this._post(id, body, true)
      .then((response) => {
        // Still alive (restored from the back/forward cache): settle it now.
        if (response.ok) {
          for (const key of keys) this._remove(key);
          this.c.forget(keys.join(' '));
          this._set('sent.' + id, null);
        }
      })
      .catch(() => {});
  }

  _start() {
    this._syncState();
    this._syncQueue();
    if (this.consent === true) this._storeIds();
    // Hidden may be the last chance (mobile browsers kill hidden tabs): flush with keepalive.
    // On pagehide the page is leaving: hand the rest to the browser at once.
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'hidden') this._flush(true, true);
    });
    win.addEventListener('pagehide', () => {
      this._saveState();
      this._unload();
    });
    const queued = this.prefix + 'q.';
    win.addEventListener('storage', (e) => {
      if (e.key && e.key.startsWith(queued)) this.c.setState(parseInt(e.key.slice(queued.length), 10) || 0, 0, 0);
      else if (e.key === this.prefix + 'state') this._syncState();
    });
    if (this.options.trackHistory) this._watchHistory();
    if (this.options.autoPage) this.page();
    this._schedule(this.c.nextWake(Date.now()));
  }

  _watchHistory() {
    let path = win.location.pathname + win.location.search;
    const changed = () => {
      const now = win.location.pathname + win.location.search;
      if (now !== path) {
        path = now;
        this.page();
      }
    };
    for (const method of ['pushState', 'replaceState']) {
      const original = history[method];
      history[method] = function (...args) {
        const result = original.apply(this, args);
        changed();
        return result;
      };
    }
    win.addEventListener('popstate', changed);
  }

  _log(message, detail) {
    if (this._debug) console.debug('[braid] ' + message, detail === undefined ? '' : detail);
  }
}

function cookie(name) {
  const m = document.cookie.match(new RegExp('(?:^|; )' + name + '=([^;]*)'));
  return m ? decodeURIComponent(m[1]) : null;
}

function retryAfterMs(header) {
  if (!header) return -1;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isFinite(date) ? Math.max(0, date - Date.now()) : -1;
}

// Loaded by the snippet: replace its stub, replaying every call queued before the SDK arrived.
if (win && Array.isArray(win.braid) && !win.braid.initialized) {
  const stub = win.braid;
  stub.initialized = true;
  load(stub._writeKey, stub._options || {}).then((braid) => {
    const queued = stub.splice(0);
    win.braid = braid;
    for (const [method, ...args] of queued) {
      if (typeof braid[method] === 'function') braid[method](...args);
    }
  });
}

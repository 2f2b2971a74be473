// Types of braid-sdk (written by hand; the runtime is sdk-js/src/runtime.js).

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type Properties = { [key: string]: JsonValue | undefined };

export interface LoadOptions {
  /** Where events go; default: the origin the SDK was loaded from. */
  apiHost?: string;
  /** Queued events that start a flush (default 20). */
  flushAt?: number;
  /** Longest wait of an event before it is sent, in ms (default 5000). */
  flushInterval?: number;
  /** Most events kept while offline; the oldest are dropped beyond it (default 1000). */
  maxQueue?: number;
  /** Inactivity that ends a session, in ms (default 30 minutes). */
  sessionTimeout?: number;
  /** Domain of the SDK's cookie, to share it with subdomains. */
  cookieDomain?: string;
  /** Keep ids and events in memory only: no cookie, no localStorage. */
  cookieless?: boolean;
  /** 'pending': nothing is stored or sent until setConsent() grants the consent category. */
  consent?: 'granted' | 'pending' | 'denied';
  /** The category that must be granted for collection (default 'analytics'). */
  consentCategory?: string;
  /** With Global Privacy Control on, behave as cookieless and mark events `context.gpc`. */
  honorGPC?: boolean;
  /** Send page() when the SDK loads (default true). */
  autoPage?: boolean;
  /** Send page() on single-page-app navigations (history API; default true). */
  trackHistory?: boolean;
  /** Where the wasm is; default next to the SDK's JS. */
  wasmUrl?: string | URL;
}

export interface EventOptions {
  context?: Properties;
  timestamp?: Date | string;
  messageId?: string;
  anonymousId?: string;
  integrations?: { [name: string]: boolean | Properties };
}

export type Callback = () => void;

export interface Payload {
  obj: { type: string; context: Properties; [field: string]: unknown };
}

export type SourceMiddleware = (args: {
  payload: Payload;
  next: (payload: Payload | null) => void;
  integrations: Record<string, unknown>;
}) => void;

export interface User {
  id(): string | null;
  anonymousId(): string;
  traits(): Properties;
}

export interface Braid {
  track(event: string, properties?: Properties, options?: EventOptions, callback?: Callback): Promise<unknown>;
  identify(userId?: string | null, traits?: Properties, options?: EventOptions, callback?: Callback): Promise<unknown>;
  identify(traits: Properties, options?: EventOptions, callback?: Callback): Promise<unknown>;
  page(category?: string, name?: string, properties?: Properties, options?: EventOptions, callback?: Callback): Promise<unknown>;
  page(name?: string, properties?: Properties, options?: EventOptions, callback?: Callback): Promise<unknown>;
  screen(category?: string, name?: string, properties?: Properties, options?: EventOptions, callback?: Callback): Promise<unknown>;
  group(groupId: string, traits?: Properties, options?: EventOptions, callback?: Callback): Promise<unknown>;
  alias(userId: string, previousId?: string, options?: EventOptions, callback?: Callback): Promise<unknown>;
  reset(): void;
  user(): User;
  ready(callback?: Callback): Promise<Braid>;
  debug(on?: boolean): void;
  addSourceMiddleware(middleware: SourceMiddleware): Braid;
  setConsent(categories: boolean | { [category: string]: boolean }): void;
  flush(): Promise<void>;
}

export function load(writeKey: string, options?: LoadOptions): Promise<Braid>;

// Event types and their properties, as the API validates them (README "The event"). Money is an integer
// number of minor units (cents) with an upper-case ISO 4217 currency.

export interface Item {
  productId: string;
  quantity?: number;
  price?: number;
}

export interface Properties {
  'page.viewed': { url?: string; path?: string; title?: string };
  'product.viewed': { productId: string; productName?: string; price?: number; currency?: string };
  'cart.item_added': { productId: string; quantity?: number; price?: number; currency?: string; cartId?: string };
  'cart.item_removed': { productId: string; quantity?: number; price?: number; currency?: string; cartId?: string };
  'checkout.started': { cartId?: string; total?: number; currency?: string; items?: Item[] };
  'order.completed': {
    orderId: string;
    total: number;
    currency: string;
    itemCount?: number;
    items?: Item[];
    paymentMethod?: string;
  };
  'payment.captured': { orderId: string; amount: number; currency: string; paymentMethod?: string };
  'order.refunded': { orderId: string; amount: number; currency: string; reason?: string };
  'inventory.updated': { productId: string; quantity: number };
}

export type KnownType = keyof Properties;

/** Custom event names: 2–4 lower-case dot-separated segments, e.g. `wishlist.item_added`. */
export type CustomType = `${string}.${string}`;

/** `properties` is required exactly when the type has required properties. */
type PropsOf<T extends KnownType> = {} extends Properties[T]
  ? { properties?: Properties[T] }
  : { properties: Properties[T] };

interface Common {
  /** Idempotency key; the SDK assigns one when absent. */
  id?: string;
  /** RFC 3339; the SDK stamps the time of the call when absent (so a retry is the same event). */
  timestamp?: string;
  sessionId?: string;
  customerId?: string;
  anonymousId?: string;
  context?: Record<string, unknown>;
}

/** A known event: `properties` typed (and required when the type has required properties). */
export type KnownEvent<T extends KnownType = KnownType> = Common & { type: T } & PropsOf<T>;

/** A custom event: any `a.b` name that is not a known type, free-form properties. */
export type CustomEvent<T extends string = CustomType> = Common & {
  type: T extends KnownType ? never : T & CustomType;
  properties?: Record<string, unknown>;
};

/** What `track` resolves to: accepted by the API, or queued for a retry after a transient failure. */
export interface TrackResult {
  id: string;
  status: 'accepted' | 'queued';
}

/** Why an event was refused (a 4xx): the API's error, never retried. */
export class TrackError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly field?: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'TrackError';
  }
}

export interface Options {
  /** The API's base URL, e.g. `https://abc.execute-api.eu-west-1.amazonaws.com`. */
  endpoint: string;
  /** The store's publishable write key (`pk_…`). */
  writeKey: string;
  /** Events per request (at most 500). Default 20. */
  batchSize?: number;
  /** Longest wait before queued events are sent, ms. Default 1000. */
  flushIntervalMs?: number;
  /** Send `page.viewed` on load and on SPA navigation (history changes). Default false. */
  autoPageViews?: boolean;
  /** Retries of a failed send (network, 5xx, 429) before giving up. Default 6. */
  maxRetries?: number;
  /** Inactivity after which a new session starts, ms. Default 30 minutes. */
  sessionTimeoutMs?: number;
}

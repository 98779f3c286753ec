// Compile-time contract of `track` (checked by `npm run typecheck`): each @ts-expect-error line must fail.
import { createAnalytics } from '../src/index';

const a = createAnalytics({ endpoint: 'https://api.example', writeKey: 'pk_x' });

void a.track({ type: 'order.completed', properties: { orderId: 'o1', total: 6791, currency: 'USD' } });
void a.track({ type: 'page.viewed' });
void a.track({ type: 'product.viewed', sessionId: 's', properties: { productId: 'p', price: 2999, currency: 'USD' } });
void a.track({ type: 'wishlist.item_added', properties: { anything: true } });

// @ts-expect-error orderId is required
void a.track({ type: 'order.completed', properties: { total: 6791, currency: 'USD' } });
// @ts-expect-error properties are required for orders
void a.track({ type: 'order.completed' });
// @ts-expect-error total is a number of minor units
void a.track({ type: 'order.completed', properties: { orderId: 'o1', total: '67.91', currency: 'USD' } });
// @ts-expect-error not an event type name
void a.track({ type: 'checkout' });

// What the seeded sample library must produce (see the daemon's seed data).

/** Template `greeting`: `Hello {{customer.name|there}}, how can I help you today?`, no customer context. */
export const GREETING_ID = 'greeting';

/** The exact string the Udesk workspace must receive for it (Udesk's sendMsg protocol). */
export const GREETING_PAYLOAD = '{"method":"sendMsg","type":"text","content":"Hello there, how can I help you today?"}';

/** Udesk's assistant may send at most one message per second. */
export const MIN_GAP_MS = 1000;

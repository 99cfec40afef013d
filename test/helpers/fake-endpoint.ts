import { randomUUID } from 'node:crypto';
import type { EndpointSettings } from '../../src/delivery/endpoint-settings.js';

/** An enabled webhook endpoint's settings for stream unit tests: every event, no controls, one signing key. */
export function fakeEndpointSettings(overrides: Partial<EndpointSettings> = {}): EndpointSettings {
  return {
    id: randomUUID(),
    orgId: randomUUID(),
    enabled: true,
    kind: 'http',
    url: 'http://127.0.0.1:9/hook',
    config: null,
    keys: [Buffer.alloc(32, 1)],
    matches: () => true,
    filter: null,
    deliverFromMs: 0,
    fifo: false,
    byKey: false,
    rateLimitPerSec: null,
    maxInFlight: null,
    failingSinceMs: null,
    cursor: { seq: '0', id: '00000000-0000-7000-8000-000000000000' },
    ...overrides,
  };
}

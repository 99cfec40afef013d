const PAYLOAD_NOTE = 'x'.repeat(60);

/** The payload of the n-th event of a scenario (and of the baseline's n-th request): ≈150 bytes of JSON. */
export const payloadFor = (n: number) => ({
  n,
  user_id: 12345,
  email: 'someone@example.com',
  plan: 'pro',
  amount: 49.5,
  note: PAYLOAD_NOTE,
});

/** Milliseconds since the epoch, fractional: the receiver stamps arrivals on the same clock. */
export const now = () => performance.timeOrigin + performance.now();

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

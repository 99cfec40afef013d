// Placeholder with the interface of the `secrets` branch (AES-256-GCM under SECRETS_KEY), which
// replaces this file when it is merged. Until then values are stored as given.
export function sealSecret(plain: string, _context: string): string {
  return plain;
}

export function openSecret(stored: string, _context: string): string {
  return stored;
}

import { verifySync } from '@node-rs/argon2';

/**
 * Piscina task: verify an API key secret against its stored argon2id hash. Synchronous on
 * purpose: this thread exists for it, and the async variant would queue on the libuv pool that
 * DNS and file I/O share.
 */
export default function verifySecret({ hash, secret }: { hash: string; secret: string }): boolean {
  try {
    return verifySync(hash, secret);
  } catch {
    return false;
  }
}

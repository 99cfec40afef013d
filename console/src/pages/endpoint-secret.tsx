import { CopyButton } from '../ui/parts.js';

/**
 * A signing secret, which the API shows on create and on rotate only: kept in this component's
 * state and nowhere else, so it is gone once the reader moves on.
 */
export function SecretOnce({ secret, what, onDismiss }: { secret: string; what: string; onDismiss(): void }) {
  return (
    <div class="secret-once">
      <p role="status">
        <strong>{what}</strong> Copy it now: it will not be shown again. Receivers verify the{' '}
        <code>webhook-signature</code> with it.
      </p>
      {/* A note, named, so it is found and read as the secret (a bare paragraph cannot carry a name). */}
      <p class="secret" role="note" aria-label="Signing secret">
        {secret}
      </p>
      <div class="actions">
        <CopyButton text={secret} label="Copy the signing secret" />
        <button type="button" class="secondary small" onClick={onDismiss}>
          I have stored it: hide
        </button>
      </div>
    </div>
  );
}

import { useState } from 'preact/hooks';
import { signIn, type Session } from '../session.js';
import { ErrorNote, Field } from '../ui/parts.js';

/** Paste a key; it is checked with GET /v1/key before anything else is shown. */
export function SignInPage({ notice, onSignedIn }: { notice: string | null; onSignedIn(session: Session): void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const [checking, setChecking] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    if (key.trim() === '') {
      setError(new Error('Paste an API key first.'));
      return;
    }
    setChecking(true);
    setError(undefined);
    try {
      onSignedIn(await signIn(key));
    } catch (caught) {
      setError(caught);
      setChecking(false);
    }
  };

  return (
    <main class="sign-in" id="main">
      <h1>Triggers console</h1>
      <p>Sign in with an API key of your org. It stays in this tab only and is sent to this server alone.</p>
      {notice && (
        <p class="note note-error" role="alert">
          {notice}
        </p>
      )}
      <form onSubmit={submit} noValidate>
        <Field id="api-key" label="API key" hint="zt_live_… or zt_test_…, as shown when the key was created.">
          <input
            id="api-key"
            name="api-key"
            type="password"
            autocomplete="off"
            spellcheck={false}
            aria-describedby="api-key-hint"
            value={key}
            onInput={(event) => setKey(event.currentTarget.value)}
          />
        </Field>
        <ErrorNote error={error} />
        <button type="submit" disabled={checking}>
          {checking ? 'Checking…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}

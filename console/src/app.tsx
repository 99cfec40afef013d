import { useEffect, useRef, useState } from 'preact/hooks';
import { type Page, PAGES } from './pages.js';
import { SignInPage } from './pages/sign-in.js';
import { href, useHashPath } from './router.js';
import { can, resumeSession, SIGNED_OUT_EVENT, type Session, signOut } from './session.js';

/** The console: sign-in until a key works, then the pages its scopes allow. */
export function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [signedOutWhy, setSignedOutWhy] = useState<string | null>(null);

  useEffect(() => {
    void resumeSession().then(setSession);
    const revoked = () => {
      signOut();
      setSession(null);
      setSignedOutWhy('The API refused the key (401): it may have been revoked. Sign in again.');
    };
    window.addEventListener(SIGNED_OUT_EVENT, revoked);
    return () => window.removeEventListener(SIGNED_OUT_EVENT, revoked);
  }, []);

  if (session === undefined) return <p class="muted center">Loading…</p>;
  if (session === null)
    return (
      <SignInPage
        notice={signedOutWhy}
        onSignedIn={(signedIn) => {
          setSignedOutWhy(null);
          setSession(signedIn);
        }}
      />
    );
  return (
    <Shell
      session={session}
      onSignOut={() => {
        signOut();
        setSession(null);
      }}
    />
  );
}

function Shell({ session, onSignOut }: { session: Session; onSignOut(): void }) {
  const path = useHashPath();
  const pages = PAGES.filter((page) => can(session, page.scope));
  const page: Page | undefined = pages.find((candidate) => candidate.name === path[0]) ?? pages[0];
  const main = useRef<HTMLElement>(null);
  const [pageName, setPageName] = useState(page?.name);

  // A new page moves focus to its heading, so keyboard and screen reader users land on it.
  useEffect(() => {
    if (page?.name === pageName) return;
    setPageName(page?.name);
    main.current?.querySelector<HTMLElement>('h1')?.focus();
  }, [page?.name, pageName]);

  useEffect(() => {
    document.title = page ? `${page.title} · Triggers console` : 'Triggers console';
  }, [page]);

  return (
    <div class="shell">
      {/* A button, not a link to #main: the fragment holds the page's route (router.ts). */}
      <button type="button" class="skip" onClick={() => main.current?.focus()}>
        Skip to content
      </button>
      <header class="top">
        <span class="brand">Triggers</span>
        <span class="who">
          <span class="org" title={session.key.org.id}>
            {session.key.org.name}
          </span>{' '}
          <span class="muted">
            key {session.key.kid} ({session.key.env})
          </span>
        </span>
        <button type="button" class="secondary" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <nav class="side" aria-label="Console pages">
        <ul>
          {pages.map((candidate) => (
            <li key={candidate.name}>
              <a href={href(candidate.name)} aria-current={candidate === page ? 'page' : undefined}>
                {candidate.title}
              </a>
            </li>
          ))}
        </ul>
        {pages.length < PAGES.length && (
          <p class="muted small-print">
            Pages this key's scopes do not allow are hidden ({session.key.scopes.join(', ') || 'no scopes'}).
          </p>
        )}
      </nav>
      <main id="main" ref={main} tabIndex={-1}>
        {page ? (
          <page.component session={session} path={path.slice(1)} />
        ) : (
          <p>This key has no scope any page needs.</p>
        )}
      </main>
    </div>
  );
}

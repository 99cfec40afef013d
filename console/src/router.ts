import { useEffect, useState } from 'preact/hooks';

/**
 * Pages live in the URL's fragment (`/console#/webhooks/<id>`): the server serves one page at
 * /console and never sees which view is open, and the browser's back button works.
 */
function currentPath(): string[] {
  return location.hash
    .replace(/^#\/?/, '')
    .split('/')
    .filter((part) => part !== '')
    .map((part) => decodeURIComponent(part));
}

export function useHashPath(): string[] {
  const [path, setPath] = useState(currentPath);
  useEffect(() => {
    const changed = () => setPath(currentPath());
    window.addEventListener('hashchange', changed);
    return () => window.removeEventListener('hashchange', changed);
  }, []);
  return path;
}

/** The href of a console page: `href('webhooks', id)` → `#/webhooks/<id>`. */
export function href(...parts: string[]): string {
  return `#/${parts.map((part) => encodeURIComponent(part)).join('/')}`;
}

export function go(...parts: string[]): void {
  location.hash = href(...parts);
}

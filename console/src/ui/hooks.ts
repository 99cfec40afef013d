import type { RefObject } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

export interface Loaded<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload(): void;
}

/**
 * Runs `load` when the page opens and whenever `deps` change; an answer that arrives after a newer
 * load started is dropped, so a slow first answer never overwrites a fresh one.
 */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data: T | undefined; error: unknown; loading: boolean }>({
    data: undefined,
    error: undefined,
    loading: true,
  });
  const generation = useRef(0);
  const run = useCallback(() => {
    const mine = ++generation.current;
    setState((previous) => ({ ...previous, loading: true }));
    load().then(
      (data) => {
        if (mine === generation.current) setState({ data, error: undefined, loading: false });
      },
      (error: unknown) => {
        if (mine === generation.current) setState((previous) => ({ data: previous.data, error, loading: false }));
      },
    );
  }, deps);
  useEffect(() => {
    run();
    return () => {
      generation.current++;
    };
  }, [run]);
  return { ...state, reload: run };
}

/** Calls `tick` every `ms` while the page is open and the tab is visible. */
export function useInterval(tick: () => void, ms: number): void {
  const latest = useRef(tick);
  latest.current = tick;
  useEffect(() => {
    const timer = setInterval(() => {
      if (document.visibilityState === 'visible') latest.current();
    }, ms);
    return () => clearInterval(timer);
  }, [ms]);
}

/** An action's state: running (disable its button), its error, and what it said when done. */
export function useAction(): {
  running: boolean;
  error: unknown;
  done: string | null;
  run(action: () => Promise<unknown>): Promise<void>;
  clear(): void;
} {
  const [running, setRunning] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const [done, setDone] = useState<string | null>(null);
  const run = async (action: () => Promise<unknown>) => {
    setRunning(true);
    setError(undefined);
    setDone(null);
    try {
      const said = await action();
      setDone(typeof said === 'string' ? said : null);
    } catch (caught) {
      setError(caught);
    } finally {
      setRunning(false);
    }
  };
  const clear = () => {
    setError(undefined);
    setDone(null);
  };
  return { running, error, done, run, clear };
}

/**
 * An inline confirm step (never window.confirm): `value` is what waits for confirmation (null:
 * nothing). When the step opens, its confirm button takes the focus; Cancel closes it and gives the
 * focus back to the button that opened it (`opener`), so keyboard users stay where they were.
 */
export function useConfirmStep<T>(): {
  value: T | null;
  open(value: T): void;
  close(): void;
  cancel(): void;
  confirmButton: RefObject<HTMLButtonElement | null>;
  opener: RefObject<HTMLButtonElement | null>;
} {
  const [value, setValue] = useState<T | null>(null);
  const confirmButton = useRef<HTMLButtonElement>(null);
  const opener = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (value !== null) confirmButton.current?.focus();
  }, [value]);
  const close = () => setValue(null);
  const cancel = () => {
    setValue(null);
    opener.current?.focus();
  };
  return { value, open: setValue, close, cancel, confirmButton, opener };
}

/** One page of a cursor-paged route: its items and the cursor of the next page (null: the last). */
export interface CursorPage<T> {
  items: T[];
  cursor: string | null;
}

export interface CursorPages<T> {
  /** Every item shown so far: the first page, then each page loaded after it. */
  items: T[];
  /** The first page has not arrived (or failed) yet. */
  loading: boolean;
  loaded: boolean;
  /** Why the first page failed. */
  error: unknown;
  hasMore: boolean;
  /** Pages after the first are shown: a reload would take them away from under the reader. */
  olderLoaded: boolean;
  loadingMore: boolean;
  /** Why the last "load more" failed. */
  moreError: unknown;
  loadMore(): Promise<void>;
  /** Reads the first page again and forgets the pages loaded after it. */
  reload(): void;
}

/**
 * A list read page by page with its route's cursor (events, deliveries, dead letters): the first
 * page when the view opens and whenever `deps` change, then the next page on request.
 */
export function useCursorPages<T>(
  fetchPage: (cursor?: string) => Promise<CursorPage<T>>,
  deps: unknown[],
): CursorPages<T> {
  const [more, setMore] = useState<CursorPage<T> | null>(null);
  const loadingMore = useAction();
  const first = useLoad(() => {
    setMore(null);
    return fetchPage();
  }, deps);
  const cursor = more ? more.cursor : (first.data?.cursor ?? null);
  const loadMore = () =>
    loadingMore.run(async () => {
      if (!cursor) return;
      const page = await fetchPage(cursor);
      setMore({ items: [...(more?.items ?? []), ...page.items], cursor: page.cursor });
    });
  return {
    items: [...(first.data?.items ?? []), ...(more?.items ?? [])],
    loading: first.loading,
    loaded: first.data !== undefined,
    error: first.error,
    hasMore: cursor !== null,
    olderLoaded: more !== null,
    loadingMore: loadingMore.running,
    moreError: loadingMore.error,
    loadMore,
    reload: first.reload,
  };
}

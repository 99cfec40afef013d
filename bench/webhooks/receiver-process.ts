import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { PathCounts, PathDump } from '../webhook-receiver.js';
import { sleep } from './clock.js';

const RECEIVER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../webhook-receiver.js');

/** bench/webhook-receiver.ts in a child process, asked over IPC what arrived. */
export class ReceiverProcess {
  private seq = 0;
  private readonly pending = new Map<number, (body: any) => void>();

  private constructor(
    readonly proc: ChildProcess,
    readonly port: number,
  ) {
    proc.on('message', (message: { seq?: number }) => {
      if (message.seq === undefined) return;
      const resolve = this.pending.get(message.seq);
      this.pending.delete(message.seq);
      resolve?.(message);
    });
    proc.once('exit', () => {
      for (const [, resolve] of this.pending) resolve({ error: 'receiver exited' });
      this.pending.clear();
    });
  }

  static async start(): Promise<ReceiverProcess> {
    const proc = fork(RECEIVER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the receiver did not start within 10 s')), 10_000);
      proc.once('exit', (code) => reject(new Error(`the receiver exited (${code}) before listening`)));
      proc.on('message', (message: { type?: string; port?: number }) => {
        if (message.type === 'ready') {
          clearTimeout(timer);
          resolve(message.port!);
        }
      });
    });
    return new ReceiverProcess(proc, port);
  }

  url(pathname: string): string {
    return `http://127.0.0.1:${this.port}${pathname}`;
  }

  private ask<T>(message: object): Promise<T> {
    if (!this.proc.connected) return Promise.reject(new Error('the receiver is not running'));
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(seq, (body) => (body.error ? reject(new Error(body.error)) : resolve(body as T)));
      this.proc.send({ seq, ...message });
    });
  }

  async counts(prefix: string): Promise<Record<string, PathCounts>> {
    return (await this.ask<{ paths: Record<string, PathCounts> }>({ cmd: 'counts', prefix })).paths;
  }

  dump(pathname: string): Promise<PathDump> {
    return this.ask<PathDump>({ cmd: 'dump', path: pathname });
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    try {
      await Promise.race([this.ask({ cmd: 'close' }), sleep(3_000)]);
    } catch {
      // not connected any more: fall through to the signal
    }
    await Promise.race([exited, sleep(2_000)]);
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGKILL');
      await exited;
    }
  }
}

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { ChannelModel, GetMessage } from 'amqplib';
import amqp from 'amqplib';
import { connect as natsConnect, type NatsConnection, type StoredMsg } from 'nats';
import { freePort } from './server.js';
import { redisUnavailable, TestRedis, type TestRedisOptions } from './redis.js';

/**
 * Real brokers for the destination tests (API.md §5b), each a child of the test on a free loopback
 * port with its data in a temp dir: RabbitMQ and NATS (with JetStream) from Debian's
 * `rabbitmq-server` and `nats-server` packages, Redis through TestRedis. `stop()` stops the broker
 * (by PID) and keeps its data, `restart()` starts it again on the same port with the same data
 * (a broker restart as clients see it), `destroy()` stops it and removes its data.
 *
 * Missing binaries: the tests skip with the reason when run by hand, and fail under CI=true.
 */

const RABBITMQ_SERVER = process.env.RABBITMQ_SERVER_BIN || '/usr/lib/rabbitmq/bin/rabbitmq-server';
const NATS_SERVER = process.env.NATS_SERVER_BIN || 'nats-server';
const EPMD = process.env.EPMD_BIN || 'epmd';

function unavailable(what: string, reason: string): string {
  const text = `${what} not found (${reason})`;
  if (process.env.CI === 'true') throw new Error(`CI=true but ${text}`);
  return text;
}

/** Why RabbitMQ tests cannot run here, or null when they can. */
export function rabbitMqUnavailable(): string | null {
  if (!fs.existsSync(RABBITMQ_SERVER)) {
    return unavailable(RABBITMQ_SERVER, "install Debian's rabbitmq-server, or set RABBITMQ_SERVER_BIN");
  }
  const probe = spawnSync(EPMD, ['-help'], { encoding: 'utf8' });
  if (probe.error) return unavailable('epmd', `install Debian's erlang-base: ${probe.error.message}`);
  return null;
}

/** Why NATS tests cannot run here, or null when they can. */
export function natsUnavailable(): string | null {
  const probe = spawnSync(NATS_SERVER, ['--version'], { encoding: 'utf8' });
  if (probe.status === 0) return null;
  return unavailable(
    'nats-server',
    `install Debian's nats-server, or set NATS_SERVER_BIN: ${probe.error?.message ?? probe.stderr}`,
  );
}

export { redisUnavailable };

/** Every broker process this test process started, killed if the test exits without stopping them. */
const running = new Set<ChildProcess>();
function killRunning(): void {
  for (const proc of running) {
    try {
      if (proc.pid !== undefined) process.kill(-proc.pid, 'SIGKILL');
    } catch {
      proc.kill('SIGKILL');
    }
  }
}
process.on('exit', killRunning);
// A test killed by a signal runs no 'exit' handler; its brokers, in process groups of their own, would stay.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killRunning();
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  });
}

/** Starts `command` in a process group of its own (so its children can be stopped with it), output captured. */
function spawnBroker(command: string, args: string[], env: NodeJS.ProcessEnv, log: { output: string }): ChildProcess {
  const proc = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  running.add(proc);
  proc.once('exit', () => running.delete(proc));
  const append = (chunk: Buffer): void => {
    log.output = (log.output + chunk.toString()).slice(-20_000);
  };
  proc.stdout!.on('data', append);
  proc.stderr!.on('data', append);
  return proc;
}

/** SIGTERM to the process, SIGKILL to its group after `graceMs`; resolves once it exited. */
async function stopProcess(proc: ChildProcess, graceMs: number, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (proc.exitCode === null && proc.signalCode === null) {
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill(signal);
    const timer = setTimeout(() => killGroup(proc), graceMs);
    await exited;
    clearTimeout(timer);
  }
  // What the broker started in its group (Erlang's helpers) goes with it.
  killGroup(proc);
}

function killGroup(proc: ChildProcess): void {
  try {
    if (proc.pid !== undefined) process.kill(-proc.pid, 'SIGKILL');
  } catch {
    // the group is gone already
  }
}

async function waitUntil(what: string, ready: () => Promise<boolean>, proc: ChildProcess, log: { output: string }) {
  const deadline = Date.now() + 60_000;
  while (!(await ready())) {
    if (proc.exitCode !== null) throw new Error(`${what} exited (${proc.exitCode}):\n${log.output}`);
    if (Date.now() > deadline) throw new Error(`${what} did not start within 60 s:\n${log.output}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * A RabbitMQ node of its own: own node name, AMQP and distribution ports, an epmd of its own on a
 * free port (Erlang would otherwise start a shared one that outlives the test), no plugins, the
 * Mnesia and log dirs in a temp dir. Boot measured here: about 6 s the first time, 4.5 s on restart
 * (2 cores, shared): one boot per test file. The `guest` user may log in from loopback.
 */
export class TestRabbitMq {
  private proc: ChildProcess | null = null;
  private epmd: ChildProcess | null = null;
  private readonly log = { output: '' };
  /** How long the last start took until an AMQP connection succeeded, in ms. */
  bootMs = 0;

  /** The broker's process (Erlang's beam and helpers are its descendants), while it runs: for CPU figures. */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  private constructor(
    readonly port: number,
    private readonly distPort: number,
    private readonly epmdPort: number,
    readonly dir: string,
  ) {}

  get url(): string {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  /** The URL with other credentials (for the wrong-credentials test). */
  urlWith(user: string, password: string): string {
    return `amqp://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${this.port}`;
  }

  get output(): string {
    return this.log.output;
  }

  static async start(): Promise<TestRabbitMq> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-rabbitmq-'));
    const broker = new TestRabbitMq(await freePort(), await freePort(), await freePort(), dir);
    fs.writeFileSync(path.join(dir, 'enabled_plugins'), '[].\n');
    await broker.restart();
    return broker;
  }

  /** Starts the node (again, if it runs: stopped first) on the same ports with the same data. */
  async restart(): Promise<void> {
    await this.stop();
    const started = Date.now();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      HOME: this.dir, // the Erlang cookie
      ERL_EPMD_PORT: String(this.epmdPort),
      RABBITMQ_NODENAME: `triggers-test-${this.port}@localhost`,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(this.port),
      RABBITMQ_DIST_PORT: String(this.distPort),
      RABBITMQ_MNESIA_BASE: path.join(this.dir, 'mnesia'),
      RABBITMQ_LOG_BASE: path.join(this.dir, 'log'),
      RABBITMQ_PID_FILE: path.join(this.dir, 'rabbitmq.pid'),
      RABBITMQ_ENABLED_PLUGINS_FILE: path.join(this.dir, 'enabled_plugins'),
      RABBITMQ_CONFIG_FILE: path.join(this.dir, 'rabbitmq'),
      RABBITMQ_ADVANCED_CONFIG_FILE: path.join(this.dir, 'advanced.config'),
      RABBITMQ_CONF_ENV_FILE: path.join(this.dir, 'rabbitmq-env.conf'),
      // The distribution port on loopback only.
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS: '-kernel inet_dist_use_interface {127,0,0,1}',
    };
    if (this.epmd === null || this.epmd.exitCode !== null) {
      this.epmd = spawnBroker(EPMD, ['-port', String(this.epmdPort), '-address', '127.0.0.1'], env, this.log);
    }
    this.proc = spawnBroker(RABBITMQ_SERVER, [], env, this.log);
    await waitUntil('rabbitmq-server', () => this.answers(), this.proc, this.log);
    this.bootMs = Date.now() - started;
  }

  /** Stops the node (SIGTERM: a clean shutdown, what a broker restart does), keeping its data. */
  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (proc) await stopProcess(proc, 20_000);
  }

  /** Kills the node (SIGKILL): a crash. Its data stays for restart(). */
  async kill(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (proc) await stopProcess(proc, 5_000, 'SIGKILL');
  }

  async destroy(): Promise<void> {
    await this.stop();
    if (this.epmd) await stopProcess(this.epmd, 2_000);
    this.epmd = null;
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** An amqplib connection as guest (close it when done). */
  connect(): Promise<ChannelModel> {
    return amqp.connect(this.url);
  }

  /**
   * Declares a durable exchange (`topic` unless told) and a durable queue bound to it with
   * `bindingKey` (`#`: everything); returns the queue name.
   */
  async declareBoundQueue(
    exchange: string,
    bindingKey = '#',
    type = 'topic',
    queueArguments?: Record<string, unknown>,
  ): Promise<string> {
    const model = await this.connect();
    try {
      const channel = await model.createChannel();
      await channel.assertExchange(exchange, type, { durable: true });
      const queue = `${exchange}.${bindingKey === '#' ? 'all' : bindingKey}`;
      await channel.assertQueue(queue, { durable: true, ...(queueArguments ? { arguments: queueArguments } : {}) });
      await channel.bindQueue(queue, exchange, bindingKey);
      return queue;
    } finally {
      await model.close();
    }
  }

  /** Declares an exchange with no queue bound (for the unroutable test). */
  async declareExchange(exchange: string, type = 'topic'): Promise<void> {
    const model = await this.connect();
    try {
      const channel = await model.createChannel();
      await channel.assertExchange(exchange, type, { durable: true });
    } finally {
      await model.close();
    }
  }

  /** Takes every message in `queue` (acked), waiting up to `waitMs` for at least `atLeast` of them. */
  async drainQueue(queue: string, atLeast: number, waitMs = 20_000): Promise<GetMessage[]> {
    const model = await this.connect();
    try {
      const channel = await model.createChannel();
      const messages: GetMessage[] = [];
      const deadline = Date.now() + waitMs;
      for (;;) {
        const message = await channel.get(queue, { noAck: true });
        if (message !== false) {
          messages.push(message);
          continue;
        }
        if (messages.length >= atLeast || Date.now() > deadline) return messages;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      await model.close();
    }
  }

  private async answers(): Promise<boolean> {
    try {
      const model = await amqp.connect(this.url, { timeout: 1000 });
      model.on('error', () => {});
      await model.close();
      return true;
    } catch {
      return false;
    }
  }
}

export interface NatsOptions {
  /** With JetStream (its store in the broker's temp dir). */
  jetstream?: boolean;
  user?: string;
  pass?: string;
}

/** A nats-server of its own, JetStream's store in a temp dir. Boot: well under a second. */
export class TestNats {
  private proc: ChildProcess | null = null;
  private readonly log = { output: '' };
  bootMs = 0;

  /** The server's process while it runs: for CPU figures. */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly options: NatsOptions,
  ) {}

  /** `nats://127.0.0.1:port`, without credentials. */
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get output(): string {
    return this.log.output;
  }

  static async start(options: NatsOptions = {}): Promise<TestNats> {
    const broker = new TestNats(await freePort(), fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-nats-')), options);
    await broker.restart();
    return broker;
  }

  /** Starts the server (again, if it runs: stopped first) on the same port with the same store. */
  async restart(): Promise<void> {
    await this.stop();
    const started = Date.now();
    const args = ['-a', '127.0.0.1', '-p', String(this.port), '-n', `triggers-test-${this.port}`];
    if (this.options.jetstream) args.push('-js', '-sd', path.join(this.dir, 'jetstream'));
    if (this.options.user) args.push('--user', this.options.user, '--pass', this.options.pass ?? '');
    this.proc = spawnBroker(NATS_SERVER, args, process.env, this.log);
    await waitUntil('nats-server', () => this.answers(), this.proc, this.log);
    this.bootMs = Date.now() - started;
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (proc) await stopProcess(proc, 10_000);
  }

  async kill(): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (proc) await stopProcess(proc, 5_000, 'SIGKILL');
  }

  /** SIGSTOP: the server keeps its connections open and answers nothing (a hung broker). */
  pause(): void {
    this.proc?.kill('SIGSTOP');
  }

  resume(): void {
    this.proc?.kill('SIGCONT');
  }

  async destroy(): Promise<void> {
    this.resume();
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** A client connection with the server's user and password, if any (close it when done). */
  connect(): Promise<NatsConnection> {
    return natsConnect({
      servers: this.url,
      user: this.options.user,
      pass: this.options.pass,
      reconnect: false,
    });
  }

  /** Adds a JetStream stream capturing `subjects`. */
  async addStream(name: string, subjects: string[]): Promise<void> {
    const nc = await this.connect();
    try {
      const jsm = await nc.jetstreamManager();
      await jsm.streams.add({ name, subjects });
    } finally {
      await nc.close();
    }
  }

  /** Every message stored in a stream, in order. */
  async readStream(name: string): Promise<StoredMsg[]> {
    const nc = await this.connect();
    try {
      const jsm = await nc.jetstreamManager();
      const info = await jsm.streams.info(name);
      const messages: StoredMsg[] = [];
      for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
        messages.push(await jsm.streams.getMessage(name, { seq }));
      }
      return messages;
    } finally {
      await nc.close();
    }
  }

  private async answers(): Promise<boolean> {
    try {
      const nc = await natsConnect({
        servers: this.url,
        user: this.options.user,
        pass: this.options.pass,
        reconnect: false,
        timeout: 1000,
      });
      await nc.close();
      return true;
    } catch {
      return false;
    }
  }
}

/** A redis-server of its own that keeps its data across restart() (TestRedis, persistent). */
export function startRedis(options: Omit<TestRedisOptions, 'persistent'> = {}): Promise<TestRedis> {
  return TestRedis.start({ ...options, persistent: true });
}

export function startRabbitMq(): Promise<TestRabbitMq> {
  return TestRabbitMq.start();
}

export function startNats(options: NatsOptions = { jetstream: true }): Promise<TestNats> {
  return TestNats.start(options);
}

export interface FloodingServer {
  port: number;
  /** Bytes the server got written (accepted by its socket) before the client closed. */
  written(): number;
  close(): Promise<void>;
}

/**
 * A TCP server that speaks a broker's protocol just far enough (`speak`), then calls `flood()` to
 * stream bytes without end: what a listed host's other service, or a hostile broker, can send. It
 * writes at most 64 MiB, so a test of a client without a cap still ends.
 */
async function startFloodingServer(speak: (socket: net.Socket, flood: () => void) => void): Promise<FloodingServer> {
  const CHUNK = Buffer.alloc(64 * 1024, 'x');
  const LIMIT = 64 * 1024 * 1024;
  let written = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    const flood = () => {
      while (!socket.destroyed && socket.writable && written < LIMIT) {
        written += CHUNK.length;
        if (!socket.write(CHUNK)) {
          socket.once('drain', flood);
          return;
        }
      }
    };
    speak(socket, flood);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    written: () => written,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A "Redis" that answers AUTH, CLIENT SETNAME and INFO, then announces a 1 GiB reply to the first XADD. */
export function startEndlessReplyRedis(): Promise<FloodingServer> {
  const bulk = (text: string) => `$${Buffer.byteLength(text)}\r\n${text}\r\n`;
  return startFloodingServer((socket, flood) => {
    let flooding = false;
    socket.on('data', (chunk: Buffer) => {
      for (const [, name] of chunk.toString('latin1').matchAll(/\*\d+\r\n\$\d+\r\n([A-Za-z]+)\r\n/g)) {
        const command = name!.toLowerCase();
        if (command === 'info') socket.write(bulk('# Server\r\nredis_version:7.0.15\r\nloading:0\r\n'));
        else if (command !== 'xadd') socket.write('+OK\r\n');
        else if (!flooding) {
          flooding = true;
          socket.write('$1073741824\r\n');
          flood();
        }
      }
    });
  });
}

/**
 * A "NATS server" that completes the handshake (INFO, then PONG to the client's PING), then answers
 * the first publish by announcing a 1 GiB message to the client's reply inbox.
 */
export function startEndlessMessageNats(): Promise<FloodingServer> {
  const info = {
    server_id: 'hostile',
    version: '2.10.0',
    proto: 1,
    headers: true,
    max_payload: 1048576,
    jetstream: true,
  };
  return startFloodingServer((socket, flood) => {
    socket.write(`INFO ${JSON.stringify(info)}\r\n`);
    let inbox: { subject: string; sid: string } | null = null;
    let flooding = false;
    socket.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      if (/(^|\n)PING\r\n/.test(text)) socket.write('PONG\r\n');
      const sub = /(?:^|\n)SUB (\S+) (\S+)\r\n/.exec(text);
      if (sub) inbox = { subject: sub[1]!.replace('*', 'reply'), sid: sub[2]! };
      if (/(?:^|\n)H?PUB /.test(text) && inbox && !flooding) {
        flooding = true;
        socket.write(`MSG ${inbox.subject} ${inbox.sid} 1073741824\r\n`);
        flood();
      }
    });
  });
}

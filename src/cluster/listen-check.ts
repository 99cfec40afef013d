import net from 'node:net';

/**
 * Why HOST:PORT cannot be listened on, as one sentence naming the fix; null when it can.
 *
 * uWebSockets.js only says that listening failed, so we try the same address with Node, whose
 * error carries the errno. The primary asks before it boots anything (a port in use fails the
 * start at once, with nothing to undo); a worker whose uWS listen fails asks again, for the message.
 * Node's listener has no SO_REUSEPORT, so another server of ours on the port counts as in use.
 */
export async function listenProblem(host: string, port: number): Promise<string | null> {
  const address = `${host}:${port}`;
  const error = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
    const probe = net.createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(null)));
  });
  if (error === null) return null;
  switch (error.code) {
    case 'EADDRINUSE':
      return `cannot listen on ${address}: the port is already in use by another program (or another server); stop it, or choose a free port with PORT=…`;
    case 'EACCES':
      return `cannot listen on ${address}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE); choose a port above 1023 with PORT=…`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${address}: ${host} is not an address of this machine; set HOST=0.0.0.0 (every interface) or one of its addresses`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return `cannot listen on ${address}: the host name ${host} does not resolve; set HOST to an address of this machine (HOST=0.0.0.0 for every interface)`;
    default:
      return `cannot listen on ${address}: ${error.code ?? ''} ${error.message}; check HOST and PORT=…`;
  }
}

/** Thrown by an HTTP worker whose listen failed: its message is for the operator, as it is. */
export class ListenError extends Error {}

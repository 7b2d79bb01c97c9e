import { createServer, type Server } from 'node:net';
import { StartupError } from './startup-error.ts';

/** A listener the node will open, and the variables that configure it. */
export interface ListenerSpec {
  /** What a person calls it: `HTTP`, `MQTT`. */
  name: string;
  port: number;
  host: string;
  /** The variables named when the port cannot be had: `HEARTH_HTTP_PORT`, `HEARTH_HTTP_HOST`. */
  portVariable: string;
  hostVariable: string;
}

/** Ports held for listeners that are not open yet. */
export interface PortReservation {
  /** The bound port of each listener, by name (a configured 0 becomes the port the system chose). */
  readonly ports: Readonly<Record<string, number>>;
  /** Lets go of one listener's port right before the real listener binds it. */
  release(name: string): Promise<void>;
  /** Lets go of every port still held (a start that fails later). */
  releaseAll(): Promise<void>;
}

/**
 * Binds every listener's port before the start changes anything, so that a busy port stops the
 * start before the store is touched (no operator account created whose generated password then
 * scrolls away with a stack trace). Each port stays held until its real listener takes it over
 * with `release()`; connections that arrive meanwhile are closed at once, as a closed port would.
 */
export async function reservePorts(specs: ListenerSpec[]): Promise<PortReservation> {
  const held = new Map<string, Server>();
  const ports: Record<string, number> = {};
  const releaseAll = async () => {
    await Promise.all([...held.keys()].map((n) => release(n)));
  };
  const release = async (name: string) => {
    const server = held.get(name);
    if (!server) return;
    held.delete(name);
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  try {
    for (const spec of specs) {
      const server = createServer((socket) => socket.destroy());
      ports[spec.name] = await new Promise<number>((resolve, reject) => {
        server.once('error', (err: NodeJS.ErrnoException) => reject(portProblem(spec, err)));
        server.listen({ port: spec.port, host: spec.host, exclusive: true }, () => {
          const addr = server.address();
          resolve(typeof addr === 'object' && addr ? addr.port : spec.port);
        });
      });
      held.set(spec.name, server);
    }
  } catch (err) {
    await releaseAll();
    throw err;
  }
  return { ports, release, releaseAll };
}

/** One line saying what is wrong with a listener and which variable fixes it. */
export function portProblem(spec: ListenerSpec, err: NodeJS.ErrnoException): Error {
  switch (err.code) {
    case 'EADDRINUSE':
      return new StartupError(`port ${spec.port} is in use (${spec.portVariable}); set ${spec.portVariable} to a free port`, spec.portVariable);
    case 'EACCES':
      return new StartupError(
        `port ${spec.port} needs privileges this process does not have (${spec.portVariable}); set ${spec.portVariable} to a port above 1023`,
        spec.portVariable,
      );
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new StartupError(
        `cannot listen on address ${spec.host} (${spec.hostVariable}): not an address of this machine; set ${spec.hostVariable} to one (0.0.0.0: all)`,
        spec.hostVariable,
      );
    default:
      return err;
  }
}

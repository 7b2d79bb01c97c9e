import { closeSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, utimesSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { StartupError } from './startup-error.ts';

/** What a running server writes into its lock: who holds the data directory, and where it listens. */
export interface RuntimeInfo {
  pid: number;
  host: string;
  startedAt: string;
  /** Tells this start's lock from a later one of the same process (tests start several). */
  nonce: string;
  /** Known once the listeners are bound. */
  httpPort?: number;
  mqttPort?: number;
}

export const LOCK_FILE = 'hearth.lock';
/** The holder touches its lock this often; a lock untouched for `STALE_MS` belongs to nobody. */
const HEARTBEAT_MS = 5_000;
const STALE_MS = 3 * HEARTBEAT_MS;

/**
 * The lock of an embedded (SQLite) data directory: one server at a time. Taken by creating
 * `<dataDir>/hearth.lock` exclusively; it holds the server's pid and ports, so that `hearth
 * simulate` and `hearth admin` find the running server. A lock left behind by a process that
 * died (SIGKILL, power cut) is taken over: its pid is gone on this host, or it has not been
 * touched for 15 s (other hosts sharing a volume, containers with their own pid namespace,
 * a pid reused after a reboot).
 */
export class DataDirLock {
  private timer: NodeJS.Timeout | undefined;
  private info: RuntimeInfo | undefined;
  readonly path: string;

  constructor(readonly dataDir: string) {
    this.path = join(dataDir, LOCK_FILE);
  }

  /** Takes the lock or throws a StartupError naming the server that holds it. */
  acquire(): void {
    mkdirSync(this.dataDir, { recursive: true });
    const info: RuntimeInfo = { pid: process.pid, host: hostname(), startedAt: new Date().toISOString(), nonce: randomBytes(6).toString('hex') };
    for (let attempt = 0; ; attempt++) {
      try {
        const fd = openSync(this.path, 'wx', 0o644);
        try {
          writeSync(fd, JSON.stringify(info) + '\n');
        } finally {
          closeSync(fd);
        }
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 2) throw err;
        const holder = readRuntimeInfo(this.dataDir);
        if (isLive(holder, this.path)) {
          const where = [holder?.httpPort && `HTTP ${holder.httpPort}`, holder?.mqttPort && `MQTT ${holder.mqttPort}`].filter(Boolean).join(', ');
          const who = holder ? `pid ${holder.pid}${holder.host !== hostname() ? ` on ${holder.host}` : ''}${where ? `, ${where}` : ''}` : 'starting';
          throw new StartupError(
            `data directory ${resolve(this.dataDir)} is in use by another Hearth (${who}); stop it, or set HEARTH_DATA_DIR to another directory`,
            'HEARTH_DATA_DIR',
          );
        }
        // Left behind by a process that is gone: move it aside (one of two racing starts wins the create).
        const aside = `${this.path}.stale-${process.pid}`;
        try {
          renameSync(this.path, aside);
          // A racing start may have taken the stale lock over between our read and the move: then
          // what we moved is its fresh lock. Put it back (only if nobody created one meanwhile).
          const moved = readRuntimeInfoAt(aside);
          if (moved && holder && moved.nonce !== holder.nonce) {
            try {
              linkSync(aside, this.path);
            } catch {
              /* a third start created one: the next create tells */
            }
          }
          unlinkSync(aside);
        } catch {
          /* another start took it over first; the next create tells */
        }
      }
    }
    this.info = info;
    this.timer = setInterval(() => this.touch(), HEARTBEAT_MS);
    this.timer.unref();
  }

  /** Records the bound ports (read by `hearth simulate` and `hearth admin`). */
  update(ports: { httpPort?: number; mqttPort?: number }): void {
    if (!this.info) return;
    this.info = { ...this.info, ...ports };
    // Replaced in one step: a start reading it meanwhile never sees half a file.
    const tmp = `${this.path}.${this.info.nonce}`;
    writeFileSync(tmp, JSON.stringify(this.info) + '\n');
    renameSync(tmp, this.path);
  }

  /** Lets go of the lock (only if it is still this process's). */
  release(): void {
    if (!this.info) return;
    clearInterval(this.timer);
    const current = readRuntimeInfo(this.dataDir);
    if (current?.nonce === this.info.nonce) {
      try {
        unlinkSync(this.path);
      } catch {
        /* gone already */
      }
    }
    this.info = undefined;
  }

  private touch(): void {
    const now = new Date();
    try {
      utimesSync(this.path, now, now);
    } catch {
      /* removed by hand: the next start simply takes it */
    }
  }
}

/** The running server's lock record in a data directory, if there is one. */
export function readRuntimeInfo(dataDir: string): RuntimeInfo | undefined {
  return readRuntimeInfoAt(join(dataDir, LOCK_FILE));
}

function readRuntimeInfoAt(path: string): RuntimeInfo | undefined {
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as RuntimeInfo;
    return typeof parsed.pid === 'number' ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** The running server's record, only when it is alive (its lock is held). */
export function runningServer(dataDir: string): RuntimeInfo | undefined {
  const info = readRuntimeInfo(dataDir);
  return info && isLive(info, join(dataDir, LOCK_FILE)) ? info : undefined;
}

/** Whether a lock file belongs to a live server; an unreadable one counts while it is fresh (being written). */
function isLive(info: RuntimeInfo | undefined, path: string): boolean {
  let touchedAgo = Infinity;
  try {
    touchedAgo = Date.now() - statSync(path).mtimeMs;
  } catch {
    return false;
  }
  if (!info) return touchedAgo <= STALE_MS;
  // Another host's server is judged by its heartbeat; one on this host by its pid, which survives
  // an event loop blocked longer than the heartbeat (a long migration, a suspended laptop).
  if (info.host !== hostname()) return touchedAgo <= STALE_MS;
  // A container restarted as the same pid (1) finds its own old lock: not a live holder.
  if (info.pid === process.pid) return false;
  try {
    process.kill(info.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

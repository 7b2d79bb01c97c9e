/**
 * A server process's V8, reached through its inspector (`node --inspect=127.0.0.1:PORT`): a full
 * garbage collection on demand, so that a memory reading counts what is retained rather than
 * garbage V8 has not collected yet (it collects the old generation lazily, and an idle process
 * may not collect for minutes).
 */
import WebSocket from 'ws';

export interface V8Handle {
  /** A full garbage collection; resolves once it is done. */
  collectGarbage(): Promise<void>;
  close(): void;
}

/** Node options that open the inspector on `port` (loopback only). */
export const inspectArgs = (port: number): string[] => [`--inspect=127.0.0.1:${port}`];

export async function connectV8(port: number): Promise<V8Handle> {
  const targets = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
  const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let seq = 0;
  const waiting = new Map<number, (m: { error?: { message: string } }) => void>();
  ws.on('message', (data) => {
    const m = JSON.parse(String(data)) as { id?: number; error?: { message: string } };
    if (m.id !== undefined) waiting.get(m.id)?.(m);
  });
  const call = (method: string) =>
    new Promise<void>((resolve, reject) => {
      const id = ++seq;
      waiting.set(id, (m) => {
        waiting.delete(id);
        if (m.error) reject(new Error(`${method}: ${m.error.message}`));
        else resolve();
      });
      ws.send(JSON.stringify({ id, method }));
    });
  return {
    collectGarbage: () => call('HeapProfiler.collectGarbage'),
    close: () => ws.close(),
  };
}

/**
 * Completion checks through Hearth's REST API, shared by the embedded benchmark (run.ts) and the
 * cluster benchmark (cluster.ts): the same API answers whether Hearth runs as one process or as
 * a cluster, so "done" means the same in both.
 */
import type { Api, DeviceCred } from './clients.ts';
import { sleep } from './stats.ts';

/** Waits until the API reports every device online (presence is written asynchronously after CONNACK). */
export async function waitOnline(api: Api, ids: string[]): Promise<void> {
  const until = Date.now() + 10_000;
  for (const id of ids) {
    for (;;) {
      const d = await api.expect<{ online: boolean }>(200, 'GET', `/api/v1/devices/${id}`);
      if (d.online) break;
      if (Date.now() > until) throw new Error(`device ${id} is not online 10 s after connecting`);
      await sleep(20);
    }
  }
}

/**
 * Polls every device's shadow until its version equals the number of reports it sent. A version
 * past that means a report was applied twice: an error, unless `onExcess` is given, which is
 * told and the device counted as done (the caller reports it after the run).
 */
export async function waitShadows(
  api: Api,
  devs: DeviceCred[],
  expected: number[],
  rejected: () => string | undefined,
  timeoutMs: number,
  onExcess?: (deviceId: string, version: number, reports: number) => void,
): Promise<void> {
  let pending = devs.map((d, i) => ({ id: d.id, want: expected[i], have: -1 }));
  const until = Date.now() + timeoutMs;
  for (;;) {
    const problem = rejected();
    if (problem) throw new Error(`Hearth rejected a report: ${problem}`);
    const results = await Promise.all(
      pending.map(async (p) => {
        const d = await api.expect<{ shadow: { version: number } }>(200, 'GET', `/api/v1/devices/${p.id}`);
        p.have = d.shadow.version;
        if (p.have > p.want) {
          if (!onExcess) throw new Error(`device ${p.id}: shadow version ${p.have} exceeds the ${p.want} reports sent`);
          onExcess(p.id, p.have, p.want);
          return true;
        }
        return p.have === p.want;
      }),
    );
    pending = pending.filter((_, i) => !results[i]);
    if (pending.length === 0) return;
    if (Date.now() > until) {
      const missing = pending.reduce((a, p) => a + (p.want - p.have), 0);
      throw new Error(
        `after ${timeoutMs} ms, ${pending.length} shadows still lag (${missing} reports not applied), e.g. ${pending[0].id} at version ${pending[0].have} of ${pending[0].want}`,
      );
    }
    await sleep(10);
  }
}

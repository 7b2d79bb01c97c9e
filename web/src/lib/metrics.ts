/**
 * Reads the Prometheus text of GET /metrics (docs/operations.md): the sum of a metric over all its
 * label sets. Pure, unit-tested in test/console-units.test.ts.
 */
export function metricSum(text: string, name: string): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum = (sum ?? 0) + value;
  }
  return sum;
}

/** The rate of a counter between two samples, per second (a restart's reset reads as 0). */
export function ratePerSecond(prev: { value: number; at: number } | undefined, next: { value: number; at: number }): number | undefined {
  if (!prev || next.at <= prev.at) return undefined;
  return Math.max(0, next.value - prev.value) / ((next.at - prev.at) / 1000);
}

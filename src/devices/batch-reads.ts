/**
 * Coalesces look-ups by key: the keys asked for during one turn of the event loop are read
 * together, after it (`setImmediate`), in one call of `read` per `max` keys. A reconnect storm
 * asks for thousands of devices at once; one `IN (…)` query per turn costs a fraction of one
 * query per device. Every caller of a key asked in the same turn gets the same answer; a failed
 * read fails every look-up of its keys.
 */
export class BatchReads<V> {
  private pending = new Map<string, Array<{ resolve(v: V | undefined): void; reject(err: unknown): void }>>();
  private scheduled = false;

  constructor(
    /** The values of these keys (absent keys: not found). */
    private readonly read: (keys: string[]) => Promise<Map<string, V>>,
    private readonly max = 500,
  ) {}

  get(key: string): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      const waiting = this.pending.get(key);
      if (waiting) waiting.push({ resolve, reject });
      else this.pending.set(key, [{ resolve, reject }]);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = new Map();
    const keys = [...batch.keys()];
    for (let i = 0; i < keys.length; i += this.max) {
      const chunk = keys.slice(i, i + this.max);
      this.read(chunk).then(
        (found) => {
          for (const k of chunk) for (const w of batch.get(k)!) w.resolve(found.get(k));
        },
        (err) => {
          for (const k of chunk) for (const w of batch.get(k)!) w.reject(err);
        },
      );
    }
  }
}

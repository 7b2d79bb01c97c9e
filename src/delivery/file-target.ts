import { mkdir, open, readdir, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Logger } from '../core/logger.ts';
import type { Delivery, Target } from '../routing/envelope.ts';
import type { FileUploader } from './s3-upload.ts';

export type FileTarget = Extract<Target, { type: 'file' }>;

export const FILE_DEFAULTS = { maxBytes: 64 * 1024 * 1024, maxAgeMs: 300_000, gzip: true, concurrency: 256 };
/** Lines written together at most (one write, one gzip member, one sync). */
const BATCH_LINES = 1000;
/** How long a line waits for others to share its write. */
const BATCH_WAIT_MS = 50;

/**
 * The gateway's file targets (docs/message-gateway.md): each target of a route appends its
 * messages, one JSON document per line, to a file of its own in its directory under the gateway
 * files root, in batches: a batch is one write (with gzip, one gzip member: concatenated members are
 * one valid gzip file) followed by a data sync, and the messages of a batch are acknowledged once it
 * is on disk. A file is written as `….part` and renamed when it reaches `maxBytes` or `maxAgeMs`
 * (also without new messages), so that readers only ever see complete files.
 */
export class FileTargets {
  private readonly sinks = new Map<string, { spec: string; sink: FileSink }>();

  constructor(private readonly deps: { root: string; nodeId: string; log: Logger; uploader?: FileUploader }) {}

  /** Resolves when the message's line is on disk. */
  append(d: Delivery & { target: FileTarget }): Promise<void> {
    const key = `${d.routeId}.${d.targetIndex}`;
    const spec = JSON.stringify(d.target);
    let s = this.sinks.get(key);
    if (s && s.spec !== spec) {
      void s.sink.close();
      s = undefined;
    }
    if (!s) {
      s = {
        spec,
        sink: new FileSink(
          join(this.deps.root, d.target.directory),
          `${d.routeId}-${d.targetIndex}`,
          this.deps.nodeId,
          d.target,
          this.deps.log,
          this.deps.uploader,
        ),
      };
      this.sinks.set(key, s);
    }
    let line = d.body;
    // One document per line, whatever the template made.
    if (line.includes('\n')) line = JSON.stringify(JSON.parse(line));
    return s.sink.append(line);
  }

  /** Closes the files of targets that are gone (`keep`: `routeId.index` of the live ones). */
  async retain(keep: ReadonlySet<string>): Promise<void> {
    for (const [key, s] of this.sinks) {
      if (keep.has(key)) continue;
      this.sinks.delete(key);
      await s.sink.close();
    }
  }

  async close(): Promise<void> {
    await this.retain(new Set());
    this.deps.uploader?.close();
  }
}

/** At a stop, how long closed files may take to reach their bucket; what is left goes at the next start. */
const UPLOAD_DRAIN_MS = 5000;

type Waiting = { line: string; resolve: () => void; reject: (err: unknown) => void };

class FileSink {
  private pending: Waiting[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly ager: NodeJS.Timeout;
  private chain: Promise<void> = Promise.resolve();
  private file: { handle: FileHandle; part: string; final: string; bytes: number; openedAt: number } | undefined;
  private seq = 0;
  private started: Promise<void> | undefined;
  private readonly maxBytes: number;
  private readonly maxAgeMs: number;
  private readonly gzip: boolean;
  private readonly node: string;
  private readonly bucket: { name: string; prefix: string } | undefined;
  /** Closed files waiting for their upload, oldest first. */
  private readonly toUpload: string[] = [];
  private uploading: Promise<void> | undefined;
  private uploadRetryMs = 1000;
  private uploadTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly dir: string,
    private readonly prefix: string,
    nodeId: string,
    target: FileTarget,
    private readonly log: Logger,
    private readonly uploader?: FileUploader,
  ) {
    this.bucket = target.upload ? { name: target.upload.bucket, prefix: target.upload.prefix ?? '' } : undefined;
    this.maxBytes = target.maxBytes ?? FILE_DEFAULTS.maxBytes;
    this.maxAgeMs = target.maxAgeMs ?? FILE_DEFAULTS.maxAgeMs;
    this.gzip = target.gzip ?? FILE_DEFAULTS.gzip;
    this.node = nodeId.replace(/[^A-Za-z0-9_-]/g, '_');
    // A file is closed once old enough even when no message comes.
    this.ager = setInterval(
      () => {
        if (this.file && Date.now() - this.file.openedAt >= this.maxAgeMs) this.enqueue(() => this.rotate());
      },
      Math.min(this.maxAgeMs, 1000),
    );
    this.ager.unref();
  }

  append(line: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ line, resolve, reject });
      if (this.pending.length >= BATCH_LINES) this.flushSoon(0);
      else this.flushSoon(BATCH_WAIT_MS);
    });
  }

  async close(): Promise<void> {
    clearInterval(this.ager);
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.enqueue(async () => {
      await this.write();
      await this.rotate();
    });
    clearTimeout(this.uploadTimer);
    const deadline = new Promise<void>((resolve) => setTimeout(resolve, UPLOAD_DRAIN_MS).unref());
    while (this.toUpload.length && this.uploader) {
      const before = this.toUpload.length;
      await Promise.race([this.uploadNext(), deadline.then(() => 'late')]);
      if (this.toUpload.length >= before) break;
    }
  }

  private flushSoon(ms: number): void {
    if (this.timer && ms > 0) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.enqueue(() => this.write());
    }, ms);
  }

  private enqueue(work: () => Promise<void>): Promise<void> {
    const run = this.chain.then(work);
    this.chain = run.catch((err: unknown) => this.log.error({ err, dir: this.dir }, 'file target: write failed; the messages are retried'));
    return run;
  }

  /**
   * Files a node left as `.part` when it stopped without closing them: complete batches, renamed.
   * With a bucket, its closed files still here (not uploaded before the stop) are uploaded now.
   */
  private async start(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const mine = (await readdir(this.dir)).filter((name) => name.startsWith(`${this.prefix}-`) && name.includes(`-${this.node}-`)).sort();
    for (const name of mine) {
      if (name.endsWith('.part')) await rename(join(this.dir, name), join(this.dir, name.slice(0, -'.part'.length)));
    }
    if (this.bucket) for (const name of mine) this.queueUpload(join(this.dir, name.endsWith('.part') ? name.slice(0, -'.part'.length) : name));
  }

  /** A closed file goes to the target's bucket, then leaves the directory; a failed upload is tried again, backing off to a minute. */
  private queueUpload(path: string): void {
    if (!this.bucket || !this.uploader) return;
    this.toUpload.push(path);
    void this.uploadNext();
  }

  private uploadNext(): Promise<void> {
    this.uploading ??= (async () => {
      const path = this.toUpload[0];
      if (!path || !this.bucket || !this.uploader) return;
      try {
        await this.uploader.upload(this.bucket.name, this.bucket.prefix + basename(path), path);
        await rm(path, { force: true });
        this.toUpload.shift();
        this.uploadRetryMs = 1000;
      } catch (err) {
        this.log.warn(
          { err, file: path, bucket: this.bucket.name, retryInMs: this.uploadRetryMs },
          'file target: upload failed; the file stays and is tried again',
        );
        clearTimeout(this.uploadTimer);
        this.uploadTimer = setTimeout(() => void this.uploadNext(), this.uploadRetryMs);
        this.uploadTimer.unref();
        this.uploadRetryMs = Math.min(60_000, this.uploadRetryMs * 2);
        return;
      } finally {
        this.uploading = undefined;
      }
      if (this.toUpload.length) void this.uploadNext();
    })();
    return this.uploading;
  }

  private async write(): Promise<void> {
    const batch = this.pending.splice(0, BATCH_LINES);
    if (batch.length === 0) return;
    if (this.pending.length) this.flushSoon(0);
    try {
      this.started ??= this.start();
      await this.started;
      const text = Buffer.from(`${batch.map((w) => w.line).join('\n')}\n`);
      const data = this.gzip ? gzipSync(text) : text;
      if (this.file && (this.file.bytes >= this.maxBytes || Date.now() - this.file.openedAt >= this.maxAgeMs)) await this.rotate();
      if (!this.file) {
        const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('.', '');
        const final = join(this.dir, `${this.prefix}-${stamp}-${this.node}-${this.seq++}.ndjson${this.gzip ? '.gz' : ''}`);
        const part = `${final}.part`;
        this.file = { handle: await open(part, 'a'), part, final, bytes: 0, openedAt: Date.now() };
      }
      await this.file.handle.write(data);
      await this.file.handle.datasync();
      this.file.bytes += data.length;
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    for (const w of batch) w.resolve();
  }

  private async rotate(): Promise<void> {
    const f = this.file;
    if (!f) return;
    this.file = undefined;
    await f.handle.close();
    await rename(f.part, f.final);
    this.queueUpload(f.final);
  }
}

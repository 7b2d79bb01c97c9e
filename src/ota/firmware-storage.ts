import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Db } from '../core/store/db.ts';

/**
 * Where firmware images live. The bytes arrive as a stream (an upload is never held whole in
 * memory) and leave as a stream of any byte range (HTTP Range). The caller hashes and bounds the
 * stream; a write that fails leaves nothing behind.
 */
export interface FirmwareStorage {
  /** Stores `source` under `id`; returns the number of bytes stored. On a throw nothing is kept. */
  write(id: string, source: AsyncIterable<Buffer>): Promise<number>;
  /** Bytes `start`..`end` (inclusive) of the image. */
  read(id: string, start: number, end: number): Readable;
  remove(id: string): Promise<void>;
}

/** Embedded mode: one file per package in `<dataDir>/firmware/`, written as `.part` and renamed when complete. */
export class FileFirmwareStorage implements FirmwareStorage {
  private readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'firmware');
  }

  async write(id: string, source: AsyncIterable<Buffer>): Promise<number> {
    await mkdir(this.dir, { recursive: true });
    const part = join(this.dir, `${id}.part`);
    const fh = await open(part, 'w', 0o600);
    let size = 0;
    try {
      for await (const chunk of source) {
        await fh.write(chunk);
        size += chunk.length;
      }
      await fh.sync();
      await fh.close();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await rm(part, { force: true });
      throw err;
    }
    await rename(part, this.path(id));
    return size;
  }

  read(id: string, start: number, end: number): Readable {
    return createReadStream(this.path(id), { start, end, highWaterMark: 256 * 1024 });
  }

  async remove(id: string): Promise<void> {
    await rm(this.path(id), { force: true });
  }

  private path(id: string): string {
    if (!/^[A-Za-z0-9_-]+$/.test(id)) throw new Error(`bad firmware id ${id}`);
    return join(this.dir, `${id}.bin`);
  }
}

/** Bytes per stored chunk (before base64). */
export const CHUNK_BYTES = 256 * 1024;
/** Chunks read per query while streaming a download. */
const CHUNKS_PER_READ = 4;

/**
 * Cluster mode: the image in the store (`firmware_chunks`, base64 text in chunks of 256 KiB), so
 * every node serves every package without a shared disk. Written in a transaction per few
 * chunks; a failed write deletes what it wrote. A range read fetches only the chunks it spans.
 */
export class StoreFirmwareStorage implements FirmwareStorage {
  constructor(private readonly db: Db) {}

  async write(id: string, source: AsyncIterable<Buffer>): Promise<number> {
    let seq = 0;
    let size = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async (all: boolean): Promise<void> => {
      let buf = Buffer.concat(pending);
      const rows: Array<{ firmware_id: string; seq: number; byte_offset: number; data: string }> = [];
      while (buf.length >= CHUNK_BYTES || (all && buf.length > 0)) {
        const piece = buf.subarray(0, CHUNK_BYTES);
        rows.push({ firmware_id: id, seq, byte_offset: seq * CHUNK_BYTES, data: piece.toString('base64') });
        seq++;
        buf = buf.subarray(piece.length);
      }
      pending = buf.length ? [buf] : [];
      pendingBytes = buf.length;
      if (rows.length) await this.db.insertInto('firmware_chunks').values(rows).execute();
    };
    try {
      for await (const chunk of source) {
        pending.push(chunk);
        pendingBytes += chunk.length;
        size += chunk.length;
        if (pendingBytes >= CHUNK_BYTES * 4) await flush(false);
      }
      await flush(true);
    } catch (err) {
      await this.remove(id).catch(() => undefined);
      throw err;
    }
    return size;
  }

  read(id: string, start: number, end: number): Readable {
    const db = this.db;
    async function* chunks(): AsyncGenerator<Buffer> {
      let seq = Math.floor(start / CHUNK_BYTES);
      const last = Math.floor(end / CHUNK_BYTES);
      while (seq <= last) {
        const rows = await db
          .selectFrom('firmware_chunks')
          .select(['seq', 'data'])
          .where('firmware_id', '=', id)
          .where('seq', '>=', seq)
          .where('seq', '<=', Math.min(last, seq + CHUNKS_PER_READ - 1))
          .orderBy('seq')
          .execute();
        if (rows.length === 0) throw new Error(`firmware ${id}: chunk ${seq} is missing`);
        for (const r of rows) {
          const s = Number(r.seq);
          if (s !== seq) throw new Error(`firmware ${id}: chunk ${seq} is missing`);
          const buf = Buffer.from(r.data, 'base64');
          const from = s * CHUNK_BYTES;
          yield buf.subarray(Math.max(0, start - from), Math.min(buf.length, end - from + 1));
          seq++;
        }
      }
    }
    return Readable.from(chunks(), { objectMode: false });
  }

  async remove(id: string): Promise<void> {
    await this.db.deleteFrom('firmware_chunks').where('firmware_id', '=', id).execute();
  }
}

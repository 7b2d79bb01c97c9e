import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import type parquetjs from '@dsnp/parquetjs';

export type ExportFormat = 'csv' | 'ndjson' | 'parquet';

/** One exported point. */
export interface ExportRow {
  ts: number;
  deviceId: string;
  property: string;
  value: unknown;
}

/** Writes rows to one file in a format; `close` finishes it. */
export interface ExportWriter {
  write(row: ExportRow): Promise<void>;
  close(): Promise<void>;
}

export const EXTENSIONS: Record<ExportFormat, string> = { csv: 'csv', ndjson: 'ndjson', parquet: 'parquet' };
export const CONTENT_TYPES: Record<ExportFormat, string> = {
  csv: 'text/csv; charset=utf-8',
  ndjson: 'application/x-ndjson; charset=utf-8',
  parquet: 'application/vnd.apache.parquet',
};

/** A CSV field: quoted when it holds a comma, a quote or a line break; objects as JSON. */
export function csvField(v: unknown): string {
  const s = v === null || v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** A text file written with back-pressure (the stream's buffer is waited on when full). */
class TextWriter implements ExportWriter {
  private readonly out: WriteStream;
  constructor(
    path: string,
    header: string | undefined,
    private readonly line: (r: ExportRow) => string,
  ) {
    this.out = createWriteStream(path);
    if (header) this.out.write(header);
  }
  async write(row: ExportRow): Promise<void> {
    if (!this.out.write(this.line(row))) await once(this.out, 'drain');
  }
  async close(): Promise<void> {
    this.out.end();
    await once(this.out, 'finish');
  }
}

/**
 * The Parquet schema of an export: the value in the column of its type (`num` for numbers,
 * `bool` for booleans, `text` for strings and, as JSON, objects); the others are null.
 */
export const PARQUET_COLUMNS = {
  ts: { type: 'TIMESTAMP_MILLIS' },
  deviceId: { type: 'UTF8' },
  property: { type: 'UTF8' },
  num: { type: 'DOUBLE', optional: true },
  bool: { type: 'BOOLEAN', optional: true },
  text: { type: 'UTF8', optional: true },
} as const;

class ParquetFileWriter implements ExportWriter {
  private constructor(private readonly w: Awaited<ReturnType<typeof parquetjs.ParquetWriter.openFile>>) {}
  static async open(path: string): Promise<ParquetFileWriter> {
    // Loaded on first use: the library (and what it brings) is not needed until a Parquet export runs.
    const parquet = (await import('@dsnp/parquetjs')).default;
    const schema = new parquet.ParquetSchema(PARQUET_COLUMNS as never);
    return new ParquetFileWriter(await parquet.ParquetWriter.openFile(schema, path, { rowGroupSize: 10_000 } as never));
  }
  write(r: ExportRow): Promise<void> {
    const v = r.value;
    return this.w.appendRow({
      ts: new Date(r.ts),
      deviceId: r.deviceId,
      property: r.property,
      ...(typeof v === 'number'
        ? { num: v }
        : typeof v === 'boolean'
          ? { bool: v }
          : v === null || v === undefined
            ? {}
            : { text: typeof v === 'string' ? v : JSON.stringify(v) }),
    });
  }
  close(): Promise<void> {
    return this.w.close();
  }
}

export async function openWriter(format: ExportFormat, path: string): Promise<ExportWriter> {
  switch (format) {
    case 'parquet':
      return ParquetFileWriter.open(path);
    case 'csv':
      return new TextWriter(
        path,
        'ts,deviceId,property,value\n',
        (r) => `${new Date(r.ts).toISOString()},${csvField(r.deviceId)},${csvField(r.property)},${csvField(r.value)}\n`,
      );
    default:
      return new TextWriter(
        path,
        undefined,
        (r) => `${JSON.stringify({ ts: new Date(r.ts).toISOString(), deviceId: r.deviceId, property: r.property, value: r.value })}\n`,
      );
  }
}

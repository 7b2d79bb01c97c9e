import { HearthError } from '../core/errors.ts';

/** One factory record: a device's hardware id, and what the factory knows of it. */
export interface FactoryRecord {
  hwid: string;
  serial: string | null;
  mac: string | null;
  /** The other columns, by header. */
  attributes: Record<string, string>;
}

/** A hardware id: one MQTT topic level without wildcards (it names a provisioning topic). */
export const HWID_PATTERN = /^[A-Za-z0-9._:@-]{1,128}$/;
/** Most rows one import takes. */
export const MAX_FACTORY_ROWS = 100_000;

/**
 * Parses factory records from CSV (RFC 4180: quoted fields, "" for a quote, CRLF or LF). The first
 * row names the columns; `hwid` is required, `serial` and `mac` are known, any other column is
 * kept as an attribute. Every problem is a 400 naming its line; nothing is imported then.
 */
export function parseFactoryCsv(text: string): FactoryRecord[] {
  const rows = parseCsv(text.replace(/^\uFEFF/, ''));
  const header = rows.shift();
  if (!header || header.length === 0 || header.every((h) => h.trim() === ''))
    throw csvError('the CSV is empty: the first line names the columns (hwid, serial, mac, …)', 1);
  const cols = header.map((h) => h.trim().toLowerCase());
  const dup = cols.find((c, i) => cols.indexOf(c) !== i);
  if (dup !== undefined) throw csvError(`the column "${dup}" appears twice`, 1);
  const hwidAt = cols.indexOf('hwid');
  if (hwidAt < 0) throw csvError(`the first line must name a "hwid" column (found: ${cols.join(', ')})`, 1);
  if (cols.some((c) => c === '')) throw csvError('a column has no name', 1);
  const out: FactoryRecord[] = [];
  const seen = new Map<string, number>();
  for (const [i, row] of rows.entries()) {
    const line = i + 2;
    if (row.length === 1 && row[0].trim() === '') continue;
    if (row.length !== cols.length) throw csvError(`${row.length} fields where the header has ${cols.length}`, line);
    const hwid = row[hwidAt].trim();
    if (!HWID_PATTERN.test(hwid)) throw csvError(`hwid "${hwid}" is not a hardware id (1 to 128 of letters, digits, . _ : @ -)`, line);
    const first = seen.get(hwid);
    if (first !== undefined) throw csvError(`hwid "${hwid}" is also on line ${first}`, line);
    seen.set(hwid, line);
    const attributes: Record<string, string> = {};
    let serial: string | null = null;
    let mac: string | null = null;
    for (const [j, c] of cols.entries()) {
      const v = row[j].trim();
      if (j === hwidAt) continue;
      if (c === 'serial') serial = v || null;
      else if (c === 'mac') mac = v || null;
      else if (v !== '') attributes[c] = v;
    }
    out.push({ hwid, serial, mac, attributes });
    if (out.length > MAX_FACTORY_ROWS) throw csvError(`more than ${MAX_FACTORY_ROWS} records: split the file`, line);
  }
  if (out.length === 0) throw csvError('the CSV has a header but no records', 2);
  return out;
}

function csvError(message: string, line: number): HearthError {
  return new HearthError('E_VALIDATION', `CSV line ${line}: ${message}`, { field: 'body', line });
}

function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let line = 1;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else {
        if (ch === '\n') line++;
        field += ch;
      }
    } else if (ch === '"') {
      if (field.trim() !== '') throw csvError('a quote inside an unquoted field', line);
      quoted = true;
      field = '';
    } else if (ch === ',') {
      row.push(field);
      field = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      line++;
    } else field += ch;
  }
  if (quoted) throw csvError('a quoted field is not closed', line);
  if (field !== '' || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

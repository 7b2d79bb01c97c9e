import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * Makes mqtt-packet's parser (the one Aedes gives every connection) buffer its input in a plain
 * `BufferList` instead of a `BufferListStream`. The parser only appends, reads and consumes bytes
 * (both classes share those methods), but the stream is a whole Duplex (two stream states, its
 * listeners) built for every connection: about 700 bytes per idle connection and part of each
 * connect's CPU, for nothing. Applied once per process; mqtt-packet itself is untouched on disk.
 */
export function leanMqttParsers(): void {
  if (applied) return;
  const fromPacket = createRequire(require.resolve('mqtt-packet'));
  const Parser = fromPacket('./parser.js') as { prototype: Record<string, unknown> };
  const Packet = fromPacket('./packet.js') as new () => unknown;
  const { BufferList } = fromPacket('bl') as { BufferList: new () => unknown };
  Parser.prototype._resetState = function resetState(this: Record<string, unknown>) {
    this.packet = new Packet();
    this.error = null;
    this._list = new BufferList();
    this._stateCounter = 0;
  };
  applied = true;
}

let applied = false;

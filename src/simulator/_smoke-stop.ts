import { createServer } from 'node:net';
import { startSimulator } from './simulator.ts';
// A "broker" that accepts the connection and then goes silent.
const srv = createServer((s) => { s.once('data', () => s.write(Buffer.from([0x20, 0x02, 0x00, 0x00]))); s.on('error', () => {}); });
await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
const port = (srv.address() as any).port;
const sim = startSimulator({ mqttUrl: `mqtt://127.0.0.1:${port}`, hubId: 'd_h', hubSecret: 'x', children: [], log: (m) => console.log('LOG', m) });
await new Promise((r) => setTimeout(r, 500));
let t = Date.now();
await sim.stop();
console.log('stop took', Date.now() - t);
// no server at all
const sim2 = startSimulator({ mqttUrl: `mqtt://127.0.0.1:1`, hubId: 'd_h', hubSecret: 'x', children: [], log: (m) => console.log('LOG2', m) });
await new Promise((r) => setTimeout(r, 1500));
t = Date.now();
await sim2.stop();
console.log('stop2 took', Date.now() - t);
srv.close();

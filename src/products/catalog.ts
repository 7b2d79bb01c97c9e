import type { ThingModel, PropertySpec, ValueSpec } from './thing-model.ts';

/** A built-in product definition. */
export interface CatalogProduct {
  key: string;
  name: string;
  category: string;
  model: ThingModel;
}

const rw = (id: string, type: PropertySpec['type'], extra: Partial<PropertySpec> = {}): PropertySpec => ({ id, type, access: 'rw', ...extra });
const ro = (id: string, type: PropertySpec['type'], extra: Partial<PropertySpec> = {}): PropertySpec => ({ id, type, access: 'r', ...extra });
const param = (id: string, type: ValueSpec['type'], extra: Partial<ValueSpec> = {}): ValueSpec => ({ id, type, ...extra });
const battery = ro('battery', 'integer', { unit: '%', min: 0, max: 100, history: true });
const rssi = ro('rssi', 'integer', { unit: 'dBm', min: -120, max: 0 });
const on = rw('on', 'boolean', { history: true });
const toggleActions = [{ id: 'toggle' }];

/** Standard smart-home products, installed on first start (and kept up to date on later starts). */
export const CATALOG: CatalogProduct[] = [
  {
    key: 'hub',
    name: 'Zigbee hub',
    category: 'gateway',
    model: {
      properties: [
        ro('firmware', 'string'),
        ro('uptime', 'integer', { unit: 's', min: 0 }),
        ro('children', 'integer', { min: 0 }),
        rw('permitJoin', 'boolean'),
      ],
      events: [{ id: 'childLeft', params: [param('hwid', 'string')] }],
      actions: [{ id: 'permitJoin', params: [param('seconds', 'integer', { min: 0, max: 254, required: true })] }, { id: 'reboot' }],
    },
  },
  {
    key: 'light',
    name: 'Dimmable colour-temperature light',
    category: 'light',
    model: {
      properties: [
        on,
        rw('brightness', 'integer', { unit: '%', min: 0, max: 100, history: true }),
        rw('colorTemp', 'integer', { unit: 'K', min: 2700, max: 6500 }),
        rssi,
      ],
      events: [],
      actions: [...toggleActions, { id: 'blink', params: [param('times', 'integer', { min: 1, max: 10 })] }],
    },
  },
  {
    key: 'plug',
    name: 'Smart plug with metering',
    category: 'plug',
    model: {
      properties: [
        on,
        ro('power', 'number', { unit: 'W', min: 0, max: 4000, history: true }),
        ro('energy', 'number', { unit: 'kWh', min: 0, history: true }),
        rssi,
      ],
      events: [{ id: 'overload', params: [param('power', 'number', { unit: 'W' })] }],
      actions: toggleActions,
    },
  },
  {
    key: 'wall-switch',
    name: 'Two-gang wall switch',
    category: 'switch',
    model: {
      properties: [rw('left', 'boolean', { history: true }), rw('right', 'boolean', { history: true })],
      events: [
        { id: 'press', params: [param('button', 'enum', { values: ['left', 'right'] }), param('kind', 'enum', { values: ['single', 'double', 'long'] })] },
      ],
      actions: [],
    },
  },
  {
    key: 'curtain',
    name: 'Curtain motor',
    category: 'cover',
    model: {
      properties: [
        rw('position', 'integer', { unit: '%', min: 0, max: 100, history: true }),
        ro('moving', 'enum', { values: ['opening', 'closing', 'stopped'] }),
      ],
      events: [{ id: 'blocked' }],
      actions: [{ id: 'open' }, { id: 'close' }, { id: 'stop' }],
    },
  },
  {
    key: 'door-lock',
    name: 'Door lock',
    category: 'lock',
    model: {
      properties: [rw('locked', 'boolean', { history: true }), battery],
      events: [
        { id: 'lock', params: [param('method', 'enum', { values: ['app', 'keypad', 'fingerprint', 'key', 'auto'] })] },
        { id: 'unlock', params: [param('method', 'enum', { values: ['app', 'keypad', 'fingerprint', 'key'] }), param('user', 'string')] },
        { id: 'tamper' },
      ],
      actions: [{ id: 'lock' }, { id: 'unlock' }],
    },
  },
  {
    key: 'thermostat',
    name: 'Thermostat / AC controller',
    category: 'climate',
    model: {
      properties: [
        rw('power', 'boolean'),
        rw('mode', 'enum', { values: ['off', 'heat', 'cool', 'auto', 'dry', 'fan'] }),
        rw('targetTemp', 'number', { unit: '°C', min: 5, max: 35, step: 0.5, history: true }),
        ro('currentTemp', 'number', { unit: '°C', min: -40, max: 80, history: true }),
        rw('fanSpeed', 'enum', { values: ['auto', 'low', 'medium', 'high'] }),
      ],
      events: [{ id: 'filterDirty' }],
      actions: [],
    },
  },
  {
    key: 'temp-humidity-sensor',
    name: 'Temperature and humidity sensor',
    category: 'sensor',
    model: {
      properties: [
        ro('temperature', 'number', { unit: '°C', min: -40, max: 80, history: true }),
        ro('humidity', 'number', { unit: '%', min: 0, max: 100, history: true }),
        battery,
      ],
      events: [],
      actions: [],
    },
  },
  {
    key: 'contact-sensor',
    name: 'Door/window contact sensor',
    category: 'sensor',
    model: {
      properties: [ro('contact', 'boolean', { history: true, description: 'true when closed' }), battery],
      events: [{ id: 'opened' }, { id: 'closed' }],
      actions: [],
    },
  },
  {
    key: 'motion-sensor',
    name: 'Motion sensor',
    category: 'sensor',
    model: {
      properties: [ro('occupancy', 'boolean', { history: true }), ro('illuminance', 'integer', { unit: 'lx', min: 0, max: 100000 }), battery],
      events: [{ id: 'motion' }],
      actions: [],
    },
  },
  {
    key: 'water-leak-sensor',
    name: 'Water leak sensor',
    category: 'sensor',
    model: { properties: [ro('leak', 'boolean', { history: true }), battery], events: [{ id: 'leak' }, { id: 'dry' }], actions: [] },
  },
  {
    key: 'smoke-sensor',
    name: 'Smoke alarm',
    category: 'sensor',
    model: {
      properties: [ro('smoke', 'boolean', { history: true }), battery],
      events: [{ id: 'smoke' }, { id: 'clear' }, { id: 'selfTest', params: [param('ok', 'boolean')] }],
      actions: [{ id: 'silence' }],
    },
  },
  {
    key: 'illuminance-sensor',
    name: 'Illuminance sensor',
    category: 'sensor',
    model: { properties: [ro('illuminance', 'integer', { unit: 'lx', min: 0, max: 100000, history: true }), battery], events: [], actions: [] },
  },
  {
    key: 'camera',
    name: 'Indoor camera',
    category: 'camera',
    model: {
      properties: [rw('recording', 'boolean'), rw('privacyMode', 'boolean'), ro('storageFree', 'integer', { unit: 'MB', min: 0 })],
      events: [{ id: 'motion', params: [param('snapshotUrl', 'string', { max: 2048 }), param('confidence', 'number', { min: 0, max: 1 })] }],
      actions: [{ id: 'snapshot', result: [param('url', 'string')] }],
    },
  },
  {
    key: 'cloud-printer',
    name: 'Cloud receipt printer',
    category: 'printer',
    model: {
      properties: [
        ro('paper', 'enum', { values: ['ok', 'low', 'out'], history: true } as Partial<ValueSpec>),
        ro('online', 'boolean'),
        ro('printed', 'integer', { min: 0 }),
      ],
      events: [{ id: 'paperOut' }, { id: 'jobDone', params: [param('jobId', 'string')] }],
      actions: [
        {
          id: 'print',
          params: [param('content', 'string', { max: 8192, required: true }), param('copies', 'integer', { min: 1, max: 10 })],
          result: [param('jobId', 'string')],
        },
      ],
      // A queued print job (`"queue": true`) waits a day for the printer.
      commandTtlMs: 86_400_000,
    },
  },
  {
    key: 'payment-speaker',
    name: 'Payment announcement speaker',
    category: 'speaker',
    model: {
      properties: [rw('volume', 'integer', { min: 0, max: 100 }), battery],
      events: [],
      actions: [
        {
          id: 'announce',
          params: [param('amount', 'number', { min: 0, required: true }), param('currency', 'string', { max: 3 }), param('text', 'string', { max: 200 })],
        },
      ],
      // A payment announced an hour late helps nobody at the till.
      commandTtlMs: 3_600_000,
    },
  },
];

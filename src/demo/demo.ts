import type { Hearth } from '../app.ts';
import { DEMO_CHILDREN, startSimulator, type RunningSimulator } from '../simulator/simulator.ts';

/** Demo credentials, kept in settings so the in-process simulator can reconnect after restarts. */
interface DemoState {
  hubId: string;
  hubSecret: string;
  lampId: string;
  lampSecret: string;
}

export interface DemoHandle {
  hubId: string;
  simulator: RunningSimulator;
  banner(httpBase: string, mqttHost: string, mqttPort: number, operatorEmail: string): string[];
  stop(): Promise<void>;
}

const KEY = 'demo.state';

/**
 * The demo: a simulated Zigbee hub with sub-devices, run in-process over real MQTT, plus one
 * spare light left for the person trying Hearth to drive with their own MQTT client.
 * Created on the first start of an empty database; resumed on later starts.
 */
export async function setupDemo(hearth: Hearth, firstStart: boolean): Promise<DemoHandle | undefined> {
  const { settings, devices } = hearth.services;
  const stored = await settings.get(KEY);
  let state: DemoState;
  if (stored) {
    state = JSON.parse(stored) as DemoState;
  } else if (firstStart) {
    const [hub, lamp] = await devices.provisionMany([
      { product: 'hub', name: 'Demo hub' },
      { product: 'light', name: 'Desk lamp (yours to drive over MQTT)' },
    ]);
    state = { hubId: hub.id, hubSecret: hub.secret, lampId: lamp.id, lampSecret: lamp.secret };
    await settings.set(KEY, JSON.stringify(state));
  } else {
    return undefined;
  }
  const log = hearth.log.child({ component: 'demo-simulator' });
  const simulator = startSimulator({
    mqttUrl: `mqtt://127.0.0.1:${hearth.mqttPort}`,
    hubId: state.hubId,
    hubSecret: state.hubSecret,
    children: DEMO_CHILDREN,
    log: (m) => log.debug(m),
  });
  // Wait for the demo devices to join so that the banner can count them, but never block the start.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    simulator.ready.catch((err: Error) => log.warn({ err: err.message }, 'demo simulator did not start')),
    new Promise((r) => (timer = setTimeout(r, 5000))),
  ]);
  clearTimeout(timer);
  if (!stored) await demoUpdate(hearth, simulator).catch((err: Error) => log.warn({ err: err.message }, 'demo firmware update not set up'));
  // Read at every start: the banner shows the hub's code as it is now, or that it cannot be claimed now.
  const hubCode = (await devices.get(state.hubId))?.pairingCode;
  const claimed = (await hearth.services.access.placement(state.hubId)) !== undefined;
  return {
    hubId: state.hubId,
    simulator,
    stop: () => simulator.stop(),
    banner: (http, mqttHost, mqttPort, operatorEmail) => {
      const { lampId: id, lampSecret: secret } = state;
      const light = [...simulator.children.values()].find((c) => c.product === 'light');
      const mqtt = `-h ${mqttHost} -p ${mqttPort} -i ${id} -u ${id} -P ${secret} -q 1`;
      const auth = `-H "Authorization: Bearer $TOKEN"`;
      return [
        '',
        `Demo: hub ${state.hubId} with ${simulator.children.size} simulated sub-devices (light, plug, lock, sensors, curtain).`,
        claimed || !hubCode
          ? `  The hub belongs to a home already: remove it from there (DELETE /api/v1/homes/{homeId}/devices/${state.hubId}) to claim it again.`
          : `  Pairing code ${hubCode}: an app user claims the hub, with its sub-devices, into a home with it (docs/api.md).`,
        `  Sign in:     TOKEN=$(curl -s -X POST ${http}/api/v1/auth/login -H 'content-type: application/json' -d '{"email":"${operatorEmail}","password":"<password>"}' | jq -r .token)`,
        `  List them:   curl -s ${auth} ${http}/api/v1/devices/${state.hubId}/children`,
        ...(light
          ? [
              `  Send one:    curl -s -X POST ${auth} -H 'content-type: application/json' ${http}/api/v1/devices/${light.id}/commands -d '{"action":"toggle"}'   (the simulated light answers)`,
            ]
          : []),
        '',
        `Be the demo desk lamp ${id} yourself with a real MQTT client (client id = user name = device id):`,
        `  report state:      mosquitto_pub ${mqtt} -t devices/${id}/properties -m '{"on":true,"brightness":80}'`,
        `  answer a command:  CMD=$(mosquitto_sub ${mqtt} -t devices/${id}/commands -C 1 | jq -r .id) && mosquitto_pub ${mqtt} -t devices/${id}/commands/result -m "{"id":"$CMD","ok":true}"`,
        `  meanwhile, send it one (it waits for your answer):  curl -s -X POST ${auth} -H 'content-type: application/json' ${http}/api/v1/devices/${id}/commands -d '{"action":"toggle"}'`,
        `  then: curl -s ${auth} ${http}/api/v1/devices/${id}`,
      ];
    },
  };
}

/** The demo's firmware package: 64 KiB that say what they are. */
function demoImage(): Buffer {
  const image = Buffer.alloc(64 * 1024);
  image.write('Hearth demo firmware for the simulated light, version 1.1.0\n');
  for (let i = 64; i < image.length; i++) image[i] = (i * 31 + 7) & 0xff;
  return image;
}

/**
 * First start: one package for the light (1.1.0) and a campaign that updates the simulated hub's
 * light to it, through the hub (docs/ota.md): finished within seconds, there to look at.
 */
async function demoUpdate(hearth: Hearth, simulator: RunningSimulator): Promise<void> {
  const { firmware, campaigns } = hearth.services;
  const light = [...simulator.children.values()].find((c) => c.product === 'light');
  if (!light) return;
  const fw = await firmware.upload({ product: 'light', version: '1.1.0', notes: 'Demo: smoother dimming' }, [demoImage()], 'system');
  // The light reports its version (1.0.0) just after joining; the campaign waits for nothing else.
  await campaigns.create({ name: 'Demo: light 1.1.0', product: 'light', firmware: fw.id, target: { devices: [light.id] } }, 'system');
}

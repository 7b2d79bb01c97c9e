/**
 * Copy-paste connection snippets for a new device (docs/protocol.md): it reports its properties
 * once, which is the first message the onboarding wizard waits for. Pure, unit-tested.
 */
export interface Connection {
  id: string;
  secret: string;
  host: string;
  port: number;
  /** MQTT over WebSocket on the console's own origin (ws(s)://host/mqtt). */
  wsUrl: string;
  /** A properties payload that fits the product (its first reported state). */
  payload: string;
}

export type SnippetKind = 'mosquitto' | 'mqttjs' | 'paho' | 'esp32';
export const SNIPPET_KINDS: SnippetKind[] = ['mosquitto', 'mqttjs', 'paho', 'esp32'];
export const SNIPPET_LABELS: Record<SnippetKind, string> = { mosquitto: 'mosquitto_pub', mqttjs: 'mqtt.js', paho: 'Python paho', esp32: 'ESP32 Arduino' };

const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const js = (s: string) => JSON.stringify(s);

export function snippet(kind: SnippetKind, c: Connection): string {
  const topic = `devices/${c.id}/properties`;
  switch (kind) {
    case 'mosquitto':
      return `mosquitto_pub -h ${c.host} -p ${c.port} -i ${c.id} -u ${c.id} -P ${sh(c.secret)} -q 1 \\
  -t ${topic} -m ${sh(c.payload)}`;
    case 'mqttjs':
      return `// npm install mqtt
import mqtt from 'mqtt';

const client = mqtt.connect(${js(c.wsUrl)}, {
  clientId: ${js(c.id)}, username: ${js(c.id)}, password: ${js(c.secret)},
});
client.on('connect', () => {
  client.publish(${js(topic)}, ${js(c.payload)}, { qos: 1 });
});
client.on('message', (topic, message) => console.log(topic, message.toString()));
client.subscribe(${js(`devices/${c.id}/commands`)}, { qos: 1 });`;
    case 'paho':
      return `# pip install paho-mqtt
import paho.mqtt.client as mqtt

client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=${js(c.id)})
client.username_pw_set(${js(c.id)}, ${js(c.secret)})
client.connect(${js(c.host)}, ${c.port})
client.loop_start()
client.publish(${js(topic)}, ${js(c.payload)}, qos=1).wait_for_publish()
client.subscribe(${js(`devices/${c.id}/commands`)}, qos=1)
client.on_message = lambda c, u, m: print(m.topic, m.payload.decode())
input("Connected; Enter to stop\\n")`;
    case 'esp32':
      return `// Arduino IDE: ESP32 board, library "PubSubClient"
#include <WiFi.h>
#include <PubSubClient.h>

const char* WIFI_SSID = "your-wifi";
const char* WIFI_PASS = "your-password";
WiFiClient net;
PubSubClient mqtt(net);

void setup() {
  Serial.begin(115200);
  WiFi.begin(WIFI_SSID, WIFI_PASS);
  while (WiFi.status() != WL_CONNECTED) delay(250);
  mqtt.setServer(${js(c.host)}, ${c.port});
  while (!mqtt.connect(${js(c.id)}, ${js(c.id)}, ${js(c.secret)})) delay(1000);
  mqtt.publish(${js(topic)}, ${js(c.payload)});
}

void loop() { mqtt.loop(); }`;
  }
}

/** A first report that fits the thing model: each property's first allowed value. */
export function samplePayload(properties: Array<{ id: string; type: string; min?: number; values?: string[] }>): string {
  const out: Record<string, unknown> = {};
  for (const p of properties.slice(0, 4)) {
    if (p.type === 'boolean') out[p.id] = true;
    else if (p.type === 'integer' || p.type === 'number') out[p.id] = p.min ?? 0;
    else if (p.type === 'enum' && p.values?.length) out[p.id] = p.values[0];
    else if (p.type === 'string') out[p.id] = 'hello';
  }
  return JSON.stringify(out);
}

// Print an instance's lifecycle events (JSON lines) until a given event, from the start.
// usage: node subscribe-events.mjs <nats-url> <instance-uuid> <until-event>
import { JSONCodec } from "nats";
import { connectUrl } from "./connect.mjs";

const [url, uuid, until] = process.argv.slice(2);
const nc = await connectUrl(url);
const jc = JSONCodec();
const consumer = await nc.jetstream().consumers.get("COMPUTE_EVENTS",
  { filterSubjects: [`compute.evt.*.${uuid}.*`] });     // an ordered consumer
const messages = await consumer.consume();
for await (const m of messages) {
  const event = jc.decode(m.data);
  console.log(JSON.stringify(event));
  if (event.event === until) break;
}
await nc.close();

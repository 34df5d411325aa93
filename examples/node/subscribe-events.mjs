// Print an instance's lifecycle events (JSON lines) from the start, until a given event.
// usage: node subscribe-events.mjs <instance-uuid> <until-event>
import { jetstream } from "@nats-io/jetstream";
import { connectCompute } from "./connect.mjs";

const [uuid, until] = process.argv.slice(2);
if (!until) {
  console.error("usage: node subscribe-events.mjs <instance-uuid> <until-event>");
  process.exit(2);
}
const nc = await connectCompute();
// an ordered consumer: ephemeral, in order, nothing to acknowledge
const consumer = await jetstream(nc).consumers.get("COMPUTE_EVENTS",
  { filter_subjects: [`compute.evt.*.${uuid}.*`] });
const messages = await consumer.consume();
for await (const m of messages) {
  const event = m.json();
  console.log(JSON.stringify(event));
  if (event.event === until) break;
}
await nc.close();

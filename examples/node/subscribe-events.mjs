// Print an instance's lifecycle events (JSON lines) from the start, until a given event.
// usage: node subscribe-events.mjs <instance-uuid> <until-event>
//
// Through a consumer of the user's own (README "Permissions"): a user may create, pull, ack
// and delete only the consumers named <user> and <user>~1 .. <user>~7, by name. An ordered
// consumer (a random name, or the nameless create) is refused by the server.
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { connectCompute, settings } from "./connect.mjs";

const STREAM = "COMPUTE_EVENTS";
const [uuid, until] = process.argv.slice(2);
if (!until) {
  console.error("usage: node subscribe-events.mjs <instance-uuid> <until-event>");
  process.exit(2);
}
const { user } = settings();
const nc = await connectCompute();
const jsm = await jetstreamManager(nc);

async function freeName() {        // the first of <user>~1 .. <user>~7 not in use
  for (let n = 1; n < 8; n++) {
    const name = `${user}~${n}`;
    try {
      await jsm.consumers.info(STREAM, name);
    } catch {
      return name;
    }
  }
  console.error(`compute example: all of ${user}'s consumer names are in use; delete one`);
  process.exit(3);
}

const name = await freeName();
await jsm.consumers.add(STREAM, {
  name, filter_subject: `compute.evt.*.${uuid}.*`, ack_policy: AckPolicy.Explicit,
  inactive_threshold: nanos(30_000),   // gone by itself if this process dies
});
try {
  const consumer = await jetstream(nc).consumers.get(STREAM, name);
  const messages = await consumer.consume();
  for await (const m of messages) {
    const event = m.json();
    m.ack();
    console.log(JSON.stringify(event));
    if (event.event === until) break;
  }
} finally {
  await jsm.consumers.delete(STREAM, name).catch(() => {});
  await nc.close();
}

// Publish one command to a compute host and print its outcome (JSON).
// usage: node publish-command.mjs <nats-url> <host> <instance-uuid> <operation> [payload-json]
import { headers, JSONCodec, createInbox } from "nats";
import { connectUrl } from "./connect.mjs";
import { randomUUID } from "node:crypto";

const [url, host, uuid, operation, payload = "{}"] = process.argv.slice(2);
const nc = await connectUrl(url);
const jc = JSONCodec();
const commandId = randomUUID();
const inbox = nc.subscribe(createInbox(nc.options.inboxPrefix), { max: 1 });
const h = headers();
h.set("Nats-Msg-Id", commandId);          // JetStream drops a re-publish of the same command
h.set("Compute-Reply-To", inbox.getSubject());
await nc.jetstream().publish(`compute.cmd.${host}.${uuid}.${operation}`,
  jc.encode({ ...JSON.parse(payload), command_id: commandId }), { headers: h });
for await (const m of inbox) {
  console.log(JSON.stringify(jc.decode(m.data)));
}
await nc.close();

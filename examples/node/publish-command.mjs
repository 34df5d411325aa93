// Publish one command to a compute host and print its outcome (one JSON line), retrying as
// the contract says: the same body (same command_id), Nats-Msg-Id <command_id>:<n>.
// usage: node publish-command.mjs <host> <instance-uuid> <operation> [payload-json]
// (connection from COMPUTE_NATS_URL / COMPUTE_NATS_USER / COMPUTE_NATS_CREDENTIALS: connect.mjs)
import { randomUUID } from "node:crypto";
import { createInbox, headers } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { connectCompute } from "./connect.mjs";

const [host, uuid, operation, payload = "{}"] = process.argv.slice(2);
if (!operation) {
  console.error("usage: node publish-command.mjs <host> <instance-uuid> <operation> [payload-json]");
  process.exit(2);
}
const WAIT_MS = Number(process.env.COMPUTE_WAIT_MS || 90_000);   // longer than a host's deadline
const nc = await connectCompute();
const js = jetstream(nc);
const commandId = process.env.COMPUTE_COMMAND_ID || randomUUID();   // the same id: a retry
const body = JSON.stringify({ ...JSON.parse(payload), command_id: commandId });

async function attempt(target, n = 1) {
  // subscribe before publishing: the outcome may come before the publish returns
  const inbox = nc.subscribe(createInbox(nc.options.inboxPrefix), { max: 1, timeout: WAIT_MS });
  const h = headers();
  h.set("Compute-Reply-To", inbox.getSubject());
  const base = target === host ? commandId : `${commandId}@${target}`;
  const ack = await js.publish(`compute.cmd.${target}.${uuid}.${operation}`, body,
    { msgID: n === 1 ? base : `${base}:${n}`, headers: h });
  if (ack.duplicate) {                 // JetStream dropped it: nobody would answer this one
    inbox.unsubscribe();
    return attempt(target, n + 1);
  }
  try {
    for await (const m of inbox) return m.json();
  } catch (err) {
    console.log(JSON.stringify({ error: "Timeout", message: `no outcome within ${WAIT_MS} ms; the command may still run (command_id ${commandId})` }));
    process.exit(3);
  }
}

let outcome = await attempt(host);
if (outcome.outcome === "Moved") outcome = await attempt(outcome.to_host);   // the same command there
console.log(JSON.stringify(outcome));
await nc.close();
process.exit(outcome.outcome === "Succeeded" || outcome.outcome === "HostUpdated" ? 0 : 1);

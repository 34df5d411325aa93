// A client written from asyncapi.yaml alone: every message it sends or receives is checked
// against the document's schemas (JSON Schema draft 07, the dialect an AsyncAPI 3.0 document
// declares by default) with ajv, found by the document's channel addresses and operations,
// never by knowing compute's types. One run: a command through its outcome, a query with the
// outcome's position as min_position, a host call, $SRV.INFO, an event and a notification.
// Prints one JSON line per message checked ({"checked": <message name>, "subject": ...}),
// then {"ok": true}; a message the document does not describe is {"error": ...}, exit 1.
// usage: node probe-contract.mjs <host> [asyncapi document, default ../../asyncapi.yaml]
// (connection from COMPUTE_NATS_URL / COMPUTE_NATS_USER / COMPUTE_NATS_CREDENTIALS: connect.mjs)
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import Ajv from "ajv";                      // the default export validates draft 07
import addFormats from "ajv-formats";
import { createInbox, headers as natsHeaders } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { connectCompute } from "./connect.mjs";

const [host, path = fileURLToPath(new URL("../../asyncapi.yaml", import.meta.url))] =
  process.argv.slice(2);
if (!host) {
  console.error("usage: node probe-contract.mjs <host> [asyncapi document]");
  process.exit(2);
}
const WAIT_MS = 30_000;
const doc = JSON.parse(readFileSync(path, "utf8"));     // JSON is YAML 1.2: the same file

// -- the document, as a client reads it --------------------------------------------------
// strict: false, as the AsyncAPI Schema adds keywords to draft 07 (discriminator: a name)
const ajv = new Ajv({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: "asyncapi", components: doc.components });   // "#/components/..." refs
const validators = new Map();

function lookup(ref) {           // "#/a/b" in the document
  return ref.replace(/^#\//, "").split("/").reduce((at, part) => at[part], doc);
}

function resolve(node) {
  while (node && node.$ref) node = lookup(node.$ref);
  return node;
}

function validator(pointer) {   // a schema of the document, by its JSON pointer
  if (!validators.has(pointer)) validators.set(pointer, ajv.compile({ $ref: `asyncapi#${pointer}` }));
  return validators.get(pointer);
}

const channels = Object.entries(doc.channels).filter(([, c]) => c.address).map(([name, c]) => {
  const tokens = c.address.split(".").map((t) => t.startsWith("{") ? "[^.]+"
    : t.replace(/[.*+?^$()|[\]\\{}]/g, "\\$&"));
  return { name, pattern: new RegExp(`^${tokens.join("\\.")}$`) };
});

function channelOf(subject) {   // the channel whose address fits; the most specific one
  const names = channels.filter((c) => c.pattern.test(subject)).map((c) => c.name);
  if (!names.length) fail(`no channel of the document has an address for ${subject}`);
  return names.sort((a, b) => a.length - b.length)[0];
}

function operationOf(channel) {
  return Object.values(doc.operations).find((op) => op.channel.$ref === `#/channels/${channel}`);
}

function messageRefs(refs) {    // channel or operation message references -> message pointers
  return refs.map((ref) => {
    let pointer = ref.$ref;          // an operation's -> the channel's -> components/messages
    for (let node = lookup(pointer); node.$ref; node = lookup(pointer)) pointer = node.$ref;
    return pointer.replace(/^#/, "");
  });
}

function headersOf(msg) {
  const out = {};
  if (msg.headers) for (const key of msg.headers.keys()) out[key] = msg.headers.get(key);
  return out;
}

function fail(error, detail = {}) {
  console.log(JSON.stringify({ error, ...detail }));
  process.exit(1);
}

// The one message of `pointers` this is: its payload fits, then its headers.
function check(pointers, subject, hdrs, data) {
  const text = typeof data === "string" ? data : new TextDecoder().decode(data);
  const value = text.trim() ? JSON.parse(text) : {};
  const problems = [];
  for (const pointer of pointers) {
    const fits = validator(`${pointer}/payload`);
    if (!fits(value)) {
      problems.push({ message: resolve({ $ref: `#${pointer}` }).name, errors: fits.errors.slice(0, 3) });
      continue;
    }
    const message = resolve({ $ref: `#${pointer}` });
    if (message.headers) {
      const headersFit = validator(`${pointer}/headers`);
      if (!headersFit(hdrs)) fail(`${subject}: headers do not fit ${message.name}`, { headers: hdrs, errors: headersFit.errors });
    }
    console.log(JSON.stringify({ checked: message.name, subject }));
    return value;
  }
  fail(`${subject}: fits none of the document's messages`, { body: text.slice(0, 300), problems });
}

function sent(subject, hdrs, body) {         // check an outgoing message; its operation
  const channel = channelOf(subject);
  check(messageRefs(Object.values(doc.channels[channel].messages)), subject, hdrs, body);
  return operationOf(channel);
}

function answered(operation, msg, what) {    // check an answer against the operation's reply
  const reply = operation.reply;
  const refs = reply.messages ?? Object.values(resolve(reply.channel).messages);
  return check(messageRefs(refs), `reply to ${what}`, headersOf(msg), msg.data);
}

function received(msg) {
  const channel = channelOf(msg.subject);
  return check(messageRefs(Object.values(doc.channels[channel].messages)), msg.subject,
               headersOf(msg), msg.data);
}

async function request(subject, payload) {
  const body = payload === undefined ? "" : JSON.stringify(payload);
  const operation = sent(subject, {}, body);
  const msg = await nc.request(subject, body, { timeout: WAIT_MS });
  return answered(operation, msg, subject);
}

// -- one run -------------------------------------------------------------------------------
const nc = await connectCompute();
const js = jetstream(nc);
const uuid = randomUUID();
// what the hosts publish about it, subscribed before the command (core NATS sees them too)
const events = nc.subscribe(`compute.evt.*.${uuid}.*`, { timeout: WAIT_MS });
const notifications = nc.subscribe(`compute.notify.${host}.instance.create.end`, { timeout: WAIT_MS });

// a command, through its outcome on the Compute-Reply-To inbox
const commandId = randomUUID();
const subject = `compute.cmd.${host}.${uuid}.run_instance`;
const body = JSON.stringify({ name: "probe", image_ref: "cirros-0.6.2", command_id: commandId,
                              flavor: { name: "m1.tiny", vcpus: 1, memory_mb: 512, root_gb: 1 } });
const inbox = nc.subscribe(createInbox(nc.options.inboxPrefix), { max: 1, timeout: WAIT_MS });
const h = natsHeaders();
h.set("Compute-Reply-To", inbox.getSubject());
h.set("Nats-Msg-Id", commandId);
const command = sent(subject, headersOf({ headers: h }), body);
await js.publish(subject, body, { msgID: commandId, headers: h });
let outcome;
for await (const m of inbox) outcome = answered(command, m, subject);
if (outcome.outcome !== "Succeeded") fail("the command did not succeed", { outcome });

// a query that reads the command's own write (the outcome's position, in its cell)
const view = await request(`compute.query.instance.${uuid}`,
                           { min_position: outcome.position, cell: outcome.cell });
if (view.instance?.vm_state !== "active") fail("the view does not show the command", { view });

// a host call, and the service discovery
await request(`compute.call.${host}.get_host_uptime`);
await request("$SRV.INFO.compute");

// an event (up to Spawned) and a notification of the run
for await (const m of events) {
  if (received(m).event === "Spawned") break;
}
for await (const m of notifications) {
  if (received(m).payload?.["nova_object.data"]?.uuid === uuid) break;
}
console.log(JSON.stringify({ ok: true, uuid }));
await nc.close();

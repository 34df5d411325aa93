// Ask a view (compute.query.<view>[.<key>]) and print its answer (JSON). With a position
// (the `position` of a command's outcome) the answer includes that command's effect.
// usage: node query.mjs <view> [key] [min-position]
import { connectCompute } from "./connect.mjs";

const [view, key, minPosition] = process.argv.slice(2);
if (!view) {
  console.error("usage: node query.mjs <view: instances|instance|hosts|host|images|migrations> [key] [min-position]");
  process.exit(2);
}
const nc = await connectCompute();
const subject = key ? `compute.query.${view}.${key}` : `compute.query.${view}`;
const body = minPosition ? JSON.stringify({ min_position: Number(minPosition), timeout: 9 }) : "";
const reply = (await nc.request(subject, body, { timeout: 10_000 })).json();
console.log(JSON.stringify(reply));
await nc.close();
process.exit(reply && reply.outcome === "Rejected" ? 1 : 0);

// Ask a view (compute.query.<view>[.<key>]) and print its answer (JSON). With a position
// (the `position` of a command's outcome) the answer includes that command's effect.
// A list view (instances, hosts, actions, images, migrations) answers a page: this follows
// each page's `next` (passed as `after`) and prints every page's items as one JSON array.
// usage: node query.mjs <view> [key] [min-position]
import { connectCompute } from "./connect.mjs";

const [view, key, minPosition] = process.argv.slice(2);
if (!view) {
  console.error("usage: node query.mjs <view: instances|instance|hosts|host|actions|images|migrations> [key] [min-position]");
  process.exit(2);
}
const nc = await connectCompute();
const subject = key ? `compute.query.${view}.${key}` : `compute.query.${view}`;
let request = minPosition ? { min_position: Number(minPosition), timeout: 9 } : {};
let reply = (await nc.request(subject, JSON.stringify(request), { timeout: 10_000 })).json();
if (reply && Array.isArray(reply.items)) {
  const items = [...reply.items];
  while (reply.next) {
    request = { after: reply.next, min_position: reply.position, timeout: 9 };
    reply = (await nc.request(subject, JSON.stringify(request), { timeout: 10_000 })).json();
    if (reply.outcome === "Rejected") break;
    items.push(...reply.items);
  }
  if (reply.outcome !== "Rejected") reply = items;
}
console.log(JSON.stringify(reply));
await nc.close();
process.exit(reply && reply.outcome === "Rejected" ? 1 : 0);

// Connect as the contract says (README "From other languages"): every URL of the
// comma-separated list (the client fails over between them), as the URL's user or else as
// COMPUTE_NATS_USER (default operator) with the password from its credentials file, and
// with the inbox prefix _INBOX.<user>: the server delivers each user's replies only there.
//
// Environment (the same names as the Python tools):
//   COMPUTE_NATS_URL          nats://127.0.0.1:14222 (default), or nats://a:4222,nats://b:4222;
//                             nats://user:password@host:port names the user
//   COMPUTE_NATS_USER         operator (default)
//   COMPUTE_NATS_CREDENTIALS  directory of password files, default: the repository's
//                             var/credentials (found from this file, so any cwd works)
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { resolve } from "node:path";
import { connect } from "@nats-io/transport-node";

const REPO = fileURLToPath(new URL("../../", import.meta.url));

export function settings(env = process.env) {
  const urls = (env.COMPUTE_NATS_URL || "nats://127.0.0.1:14222").split(",").map((u) => new URL(u.trim()));
  const named = urls.find((u) => u.username);
  const user = named ? decodeURIComponent(named.username) : env.COMPUTE_NATS_USER || "operator";
  let pass = named ? decodeURIComponent(named.password) : undefined;
  if (pass === undefined) {
    const dir = resolve(env.COMPUTE_NATS_CREDENTIALS || resolve(REPO, "var/credentials"));
    try {
      pass = readFileSync(resolve(dir, user), "utf8").trim();
    } catch {
      throw new Error(`no password for NATS user ${user} in ${dir}: set COMPUTE_NATS_CREDENTIALS, or put user:password in COMPUTE_NATS_URL`);
    }
  }
  return { servers: urls.map((u) => `${u.hostname}:${u.port || 4222}`), user, pass };
}

// One line and exit code 3 when NATS cannot be used (as the compute CLI does), no stack.
export async function connectCompute(env = process.env) {
  try {
    const { servers, user, pass } = settings(env);
    return await connect({ servers, user, pass, inboxPrefix: `_INBOX.${user}`,
                           name: "compute-node-example", timeout: 5000 });
  } catch (err) {
    console.error(`compute example: cannot use NATS: ${err.message}`);
    process.exit(3);
  }
}

// Connect as the user named in the URL (nats://user:password@host:port): nats.js takes the
// credentials as options, and each user reads replies only under its own _INBOX.<user>.
import { connect } from "nats";

export async function connectUrl(url) {
  const u = new URL(url);
  const user = decodeURIComponent(u.username);
  return connect({
    servers: `${u.hostname}:${u.port || 4222}`,
    ...(user ? { user, pass: decodeURIComponent(u.password), inboxPrefix: `_INBOX.${user}` } : {}),
  });
}

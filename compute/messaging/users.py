"""The NATS users of a server: roles from ``nats.conf``, users in a state directory.

``nats.conf`` holds each role as a permission template (JSON inside the ``authorization``
block). A state directory (``var/`` for the embedded server) holds, per user, its role and
bcrypt hash (``nats-users.json``), the file nats-server includes (``nats-users.conf``: each
user with its role's lists filled in for its name), and the user's password for the clients
of this machine (``credentials/<user>``, mode 0600). Plain NATS users cannot template on a
host's name, so each compute host is a user of its own, ``host-<host>``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

import bcrypt

USERS_JSON = "nats-users.json"
USERS_CONF = "nats-users.conf"
CREDENTIALS = "credentials"
BASE_USERS = ("admin", "operator", "auditor")   # one of each role but host, made on first start
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # a single subject token
BCRYPT_COST = 11
CONSUMERS_PER_USER = 8
CONSUMER_SEPARATOR = "~"      # never in a user name (NAME), so no user's names are another's


def consumer_names(user: str) -> list[str]:
    """The JetStream consumers ``user`` may create, pull, ack and delete on the read streams:
    ``<user>`` and ``<user>~1`` .. ``<user>~7`` (issue 18 item 8). A permission matches whole
    subject tokens, and the consumer's name is one token of the API subjects
    (``$JS.API.CONSUMER.CREATE.<stream>.<name>[.<filter>]``, ``...MSG.NEXT.<stream>.<name>``,
    ``$JS.ACK.<stream>.<name>.>``): a name prefix cannot be a permission, so each user gets a
    fixed set of names, written out in its permissions (``{consumer}`` in a role)."""
    return [user] + [f"{user}{CONSUMER_SEPARATOR}{n}" for n in range(1, CONSUMERS_PER_USER)]


def _expand(subjects: list[str], user: str) -> list[str]:
    """A role's list with each ``{consumer}`` subject written once per consumer name."""
    out: list[str] = []
    for subject in subjects:
        out += [subject.replace("{consumer}", name) for name in consumer_names(user)] \
            if "{consumer}" in subject else [subject]
    return out


def permissions_for(role: dict[str, Any], user: str, host: str) -> dict[str, Any]:
    """A role's template filled in for one user."""
    filled = json.loads(json.dumps(role).replace("{user}", user).replace("{host}", host))
    for direction in ("publish", "subscribe"):
        for kind in ("allow", "deny"):
            listed = filled.get(direction, {}).get(kind)
            if listed is not None:
                filled[direction][kind] = _expand(listed, user)
    return filled


def split_roles(text: str) -> tuple[dict[str, dict[str, Any]], str]:
    """The roles of a config (each ``NAME = {json}`` of its ``authorization`` block, by
    lower-case name) and the config without them: they are templates, not server settings
    (nats-server refuses a variable nothing uses)."""
    template = re.compile(r"^[ \t]*([A-Z]+)[ \t]*=[ \t]*(?=\{)", re.MULTILINE)
    decoder = json.JSONDecoder()
    roles: dict[str, dict[str, Any]] = {}
    kept, at = [], 0
    match = template.search(text, text.index("authorization"))
    while match:
        roles[match.group(1).lower()], end = decoder.raw_decode(text, match.end())
        kept.append(text[at:match.start()])
        at = end
        match = template.search(text, end)
    return roles, "".join(kept) + text[at:]


def load_roles(config: Path) -> dict[str, dict[str, Any]]:
    return split_roles(config.read_text())[0]


def host_user(host: str) -> str:
    """A compute host's NATS user, also the name of its durable consumer."""
    return f"host-{host}"


def user_name(role: str, name: str) -> str:
    return host_user(name) if role == "host" else name


class Users:
    """The users of one server's state directory."""

    def __init__(self, state_dir: str | Path, roles: dict[str, dict[str, Any]]) -> None:
        self.dir = Path(state_dir)
        self.roles = roles

    @property
    def credentials(self) -> Path:
        return self.dir / CREDENTIALS

    def load(self) -> dict[str, dict[str, str]]:
        path = self.dir / USERS_JSON
        return json.loads(path.read_text()) if path.exists() else {}

    def add(self, role: str, name: str, *, password: str | None = None,
            cost: int = BCRYPT_COST) -> tuple[str, str]:
        """Add (or give a new password to) a user; returns its user name and password.
        A host's ``name`` is the compute host; its user is ``host-<name>``."""
        if role not in self.roles:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(sorted(self.roles))}")
        if not NAME.match(name):
            raise ValueError(f"{name!r}: lower-case letters, digits, '-' and '_' only")
        if role != "host" and name.startswith(host_user("")):
            raise ValueError(f"{name!r}: names host-<host> belong to compute hosts")
        user = user_name(role, name)
        password = password or secrets.token_urlsafe(24)
        users = self.load()
        users[user] = {"role": role, "host": name if role == "host" else "",
                       "hash": bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()}
        self._private(self.credentials / user, password)
        self._private(self.dir / USERS_JSON, json.dumps(users, indent=1))
        self.render(users)
        return user, password

    def ensure(self, role: str, name: str, *, cost: int = BCRYPT_COST) -> str:
        """The user, added with a random password unless it exists (with its password here)."""
        user = user_name(role, name)
        if user not in self.load() or not (self.credentials / user).exists():
            self.add(role, name, cost=cost)
        return user

    def password(self, user: str) -> str:
        return (self.credentials / user).read_text().strip()

    def render(self, users: dict[str, dict[str, str]] | None = None) -> Path:
        """Write the file nats-server includes, from the roles as they are in nats.conf now."""
        users = self.load() if users is None else users
        entries = []
        for user, entry in sorted(users.items()):
            permissions = json.dumps(permissions_for(self.roles[entry["role"]], user,
                                                     entry["host"]))
            entries.append(f'  {{"user": {json.dumps(user)}, "password": '
                           f'{json.dumps(entry["hash"])}, "permissions": {permissions}}}')
        text = ("# Written by compute (compute/messaging/users.py) from the roles in nats.conf\n"
                "# and nats-users.json; edit those, not this file.\n"
                "users = [\n" + ",\n".join(entries) + "\n]\n")
        return self._private(self.dir / USERS_CONF, text)

    def _private(self, path: Path, text: str) -> Path:
        """Written readable by this user only, from the first byte on."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        return path

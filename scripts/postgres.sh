#!/usr/bin/env bash
# Make the machine's PostgreSQL answer on 127.0.0.1:5432 for the suite's PostgreSQL cases:
# start an installed cluster that is stopped, and create the `test` database if it is missing.
# A machine without PostgreSQL is fine: those cases are skipped, with the reason.
set -uo pipefail

answers() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

if answers; then
  echo "== PostgreSQL answers on 127.0.0.1:5432"
elif [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null; then
  for version in $(ls /etc/postgresql); do
    echo "== starting the machine's PostgreSQL $version (cluster main): it was stopped"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start \
      || echo "   could not start it; the PostgreSQL cases will be skipped"
  done
else
  echo "== no PostgreSQL installed: the PostgreSQL cases will be skipped"
fi

if answers && command -v psql >/dev/null \
   && ! psql -h 127.0.0.1 -U postgres -d test -Atc 'SELECT 1' >/dev/null 2>&1; then
  echo "== creating the database 'test' for the PostgreSQL cases"
  createdb -h 127.0.0.1 -U postgres test \
    || echo "   could not create it; the PostgreSQL cases will be skipped"
fi
exit 0

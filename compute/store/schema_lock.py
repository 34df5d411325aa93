"""The advisory lock under which hosts create the store's tables on PostgreSQL.

Its own module because the event tables (``app``), the answers table (``answers``) and the
group-commit function (``pgcommit``) are all created under it, and none of them may import
another back."""

CREATE_LOCK = 0x636F6D7075746531   # "compute1": the store's table creation

"""Persistent network state: networks, endpoints (IPAM), sandboxes, ports.

One SQLite database (``<state_dir>/network.db``, WAL). Every change runs in a
``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock before
reading: two threads or two processes allocating at once are serialised, so
an address or a host port is never handed out twice, and a crash leaves the
last committed state.
"""

import contextlib
import json
import os
import sqlite3
import threading

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    driver TEXT NOT NULL,
    created TEXT NOT NULL,
    subnet TEXT,
    gateway TEXT,
    ip_range TEXT,
    bridge TEXT,
    internal INTEGER NOT NULL DEFAULT 0,
    attachable INTEGER NOT NULL DEFAULT 0,
    predefined INTEGER NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS sandboxes (
    container_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    netns TEXT,
    mode TEXT NOT NULL,
    hostname TEXT,
    ports TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL REFERENCES networks(id),
    container_id TEXT NOT NULL,
    container_name TEXT NOT NULL,
    ifname TEXT NOT NULL,
    host_veth TEXT,
    ip TEXT,
    mac TEXT,
    aliases TEXT NOT NULL DEFAULT '[]',
    ipam_ip TEXT,
    seq INTEGER NOT NULL DEFAULT 0,
    UNIQUE (network_id, ip),
    UNIQUE (network_id, container_id)
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ports (
    container_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    proto TEXT NOT NULL,
    host_ip TEXT NOT NULL,
    host_port INTEGER NOT NULL,
    container_ip TEXT NOT NULL,
    container_port INTEGER NOT NULL,
    UNIQUE (proto, host_ip, host_port)
);
"""


class Store:
    def __init__(self, state_dir):
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self.path = os.path.join(state_dir, "network.db")
        self._local = threading.local()
        self._conn().executescript(SCHEMA)

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def tx(self):
        """A write transaction (exclusive among writers, across processes)."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def read(self):
        return self._conn()

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def network_row(row):
    d = dict(row)
    d["labels"] = json.loads(d["labels"])
    d["options"] = json.loads(d["options"])
    d["internal"] = bool(d["internal"])
    d["attachable"] = bool(d["attachable"])
    d["predefined"] = bool(d["predefined"])
    return d


def endpoint_row(row):
    d = dict(row)
    d["aliases"] = json.loads(d["aliases"])
    return d

"""The engine's state database (SQLite, <data-root>/engine.db).

One row per container: its id, name and the inspect-shaped record as JSON.
Writes are single transactions, so a crash leaves a database that loads.
"""

import json
import os
import sqlite3


class StateDB:
    def __init__(self, path: str):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS containers ("
                        "id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, data TEXT NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")

    def load_containers(self) -> list[dict]:
        return [json.loads(r[0]) for r in self.db.execute("SELECT data FROM containers")]

    def save_container(self, rec: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO containers (id, name, data) VALUES (?, ?, ?)",
                        (rec["Id"], rec["Name"], json.dumps(rec)))

    def delete_container(self, cid: str) -> None:
        self.db.execute("DELETE FROM containers WHERE id = ?", (cid,))

    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                        (key, json.dumps(value)))

    def close(self):
        self.db.close()

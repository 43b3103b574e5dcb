"""SQLite access for shelf: connection handling and schema."""

import os
import sqlite3

from flask import Flask, g

SCHEMA = """
CREATE TABLE IF NOT EXISTS bookmarks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    url        TEXT    NOT NULL,
    title      TEXT    NOT NULL DEFAULT '',
    created_at TEXT    NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS tags (
    bookmark_id INTEGER NOT NULL REFERENCES bookmarks(id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    PRIMARY KEY (bookmark_id, name)
);
"""


def database_path() -> str:
    return os.environ.get("SHELF_DB", "shelf.sqlite3")


def get_db() -> sqlite3.Connection:
    """Return the connection for the current request, opening it on first use."""
    if "db" not in g:
        conn = sqlite3.connect(database_path())
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        g.db = conn
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def init_db() -> None:
    get_db().executescript(SCHEMA)


def tags_for(bookmark_id: int) -> list[str]:
    rows = get_db().execute(
        "SELECT name FROM tags WHERE bookmark_id = ? ORDER BY name", (bookmark_id,)
    ).fetchall()
    return [row["name"] for row in rows]


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_db)

    @app.cli.command("init-db")
    def init_db_command() -> None:
        """Create the database tables."""
        init_db()
        print(f"Initialized {database_path()}")

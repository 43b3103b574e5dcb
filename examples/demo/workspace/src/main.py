"""HTTP API of the shelf bookmarks service."""

import os

from dotenv import load_dotenv
from flask import Flask, abort, jsonify, request

from shelf import db

load_dotenv()

app = Flask(__name__)
db.init_app(app)


def require_api_key() -> None:
    expected = os.environ.get("SHELF_API_KEY")
    if expected and request.headers.get("X-Api-Key") != expected:
        abort(401)


def to_dict(row) -> dict:
    return {**dict(row), "tags": db.tags_for(row["id"])}


@app.get("/health")
def health():
    return jsonify(ok=True)


@app.get("/bookmarks")
def list_bookmarks():
    rows = db.get_db().execute("SELECT * FROM bookmarks ORDER BY created_at DESC").fetchall()
    tag = request.args.get("tag")
    items = [to_dict(row) for row in rows]
    if tag:
        items = [item for item in items if tag in item["tags"]]
    return jsonify(items)


@app.post("/bookmarks")
def create_bookmark():
    require_api_key()
    body = request.get_json(silent=True) or {}
    url = body.get("url", "")
    if not url.startswith(("http://", "https://")):
        return jsonify(error="url must be an http(s) URL"), 400
    conn = db.get_db()
    cur = conn.execute(
        "INSERT INTO bookmarks (url, title) VALUES (?, ?)", (url, body.get("title", ""))
    )
    for name in body.get("tags", []):
        conn.execute("INSERT INTO tags (bookmark_id, name) VALUES (?, ?)", (cur.lastrowid, name))
    conn.commit()
    return jsonify(id=cur.lastrowid), 201


@app.get("/bookmarks/<int:bookmark_id>")
def get_bookmark(bookmark_id: int):
    row = db.get_db().execute("SELECT * FROM bookmarks WHERE id = ?", (bookmark_id,)).fetchone()
    if row is None:
        abort(404)
    return jsonify(to_dict(row))


@app.delete("/bookmarks/<int:bookmark_id>")
def delete_bookmark(bookmark_id: int):
    require_api_key()
    conn = db.get_db()
    cur = conn.execute("DELETE FROM bookmarks WHERE id = ?", (bookmark_id,))
    conn.commit()
    if cur.rowcount == 0:
        abort(404)
    return "", 204


@app.get("/bookmarks/search")
def search_bookmarks():
    q = request.args.get("q", "")
    sql = f"SELECT * FROM bookmarks WHERE title LIKE '%{q}%' OR url LIKE '%{q}%'"
    rows = db.get_db().execute(sql).fetchall()
    return jsonify([to_dict(row) for row in rows])

import os, sys
import sqlite3
import json


DB_PATH = os.environ.get("INVENTORY_DB", "inventory.sqlite")


def connect():
    return sqlite3.connect(DB_PATH)


def find_items(name):
    conn = connect()
    # Builds SQL from user input: injectable.
    rows = conn.execute("SELECT id, name, count FROM items WHERE name = '%s'" % name).fetchall()
    return rows


def add_item(name, count, tags=[]):
    tags.append("new")
    conn = connect()
    conn.execute("INSERT INTO items (name, count, tags) VALUES (?, ?, ?)", (name, count, json.dumps(tags)))
    conn.commit()


def total(items):
    result = 0
    for i in range(len(items)):
        result = result + items[i]["count"]
    return result


def load_config(path):
    try:
        with open(path) as f:
            return json.load(f)
    except:
        return {}

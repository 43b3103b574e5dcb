import pytest

from shelf.db import init_db
from shelf.main import app


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("SHELF_DB", str(tmp_path / "test.sqlite3"))
    monkeypatch.delenv("SHELF_API_KEY", raising=False)
    app.config.update(TESTING=True)
    with app.app_context():
        init_db()
    with app.test_client() as client:
        yield client


def create(client, **body):
    response = client.post("/bookmarks", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_health(client):
    assert client.get("/health").get_json() == {"ok": True}


def test_create_and_fetch(client):
    bookmark_id = create(client, url="https://example.com", title="Example", tags=["demo"])
    body = client.get(f"/bookmarks/{bookmark_id}").get_json()
    assert body["url"] == "https://example.com"
    assert body["tags"] == ["demo"]


def test_rejects_non_http_url(client):
    response = client.post("/bookmarks", json={"url": "javascript:alert(1)"})
    assert response.status_code == 400


def test_filter_by_tag(client):
    create(client, url="https://a.example", tags=["python"])
    create(client, url="https://b.example", tags=["rust"])
    items = client.get("/bookmarks?tag=rust").get_json()
    assert [item["url"] for item in items] == ["https://b.example"]


def test_delete_unknown_is_404(client):
    assert client.delete("/bookmarks/999").status_code == 404


def test_search_matches_title(client):
    create(client, url="https://docs.python.org", title="Python docs")
    create(client, url="https://doc.rust-lang.org", title="Rust docs")
    items = client.get("/bookmarks/search?q=Python").get_json()
    assert len(items) == 1


def test_write_requires_api_key(client, monkeypatch):
    monkeypatch.setenv("SHELF_API_KEY", "test-key")
    assert client.post("/bookmarks", json={"url": "https://x.example"}).status_code == 401
    response = client.post(
        "/bookmarks", json={"url": "https://x.example"}, headers={"X-Api-Key": "test-key"}
    )
    assert response.status_code == 201

"""Encryption at rest (ennu/crypto.py): ciphertext in the database, a key required outside local mode,
the previous key still read during a rotation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, select

from ennu import crypto
from ennu.settings import reload_settings


@pytest.fixture()
def keyed(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    yield monkeypatch
    monkeypatch.undo()
    reload_settings()


def test_round_trip_keeps_no_plain_text(keyed: pytest.MonkeyPatch) -> None:
    keyed.setenv("ENNU_DATA_KEY", Fernet.generate_key().decode())
    reload_settings()
    token = crypto.encrypt("https://hooks.zapier.com/hooks/catch/1/abc")
    assert "zapier" not in token
    assert crypto.decrypt(token) == "https://hooks.zapier.com/hooks/catch/1/abc"


def test_production_without_a_key_refuses(keyed: pytest.MonkeyPatch) -> None:
    keyed.setenv("ENNU_ENV", "production")
    keyed.delenv("ENNU_DATA_KEY", raising=False)
    reload_settings()
    with pytest.raises(crypto.DataKeyMissing, match="ENNU_DATA_KEY"):
        crypto.encrypt("x")


def test_a_malformed_key_is_named_not_repeated(keyed: pytest.MonkeyPatch) -> None:
    keyed.setenv("ENNU_DATA_KEY", "not-a-fernet-key-at-all")
    reload_settings()
    with pytest.raises(crypto.DataKeyInvalid) as caught:
        crypto.check_data_key()
    assert "ENNU_DATA_KEY" in str(caught.value) and "not-a-fernet" not in str(caught.value)


def test_columns_hold_ciphertext_and_previous_keys_still_decrypt(keyed: pytest.MonkeyPatch) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    keyed.setenv("ENNU_DATA_KEY", old)
    reload_settings()
    table = Table(
        "secrets_at_rest",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("url", crypto.EncryptedText()),
        Column("doc", crypto.EncryptedJSON()),
    )
    engine = create_engine("sqlite://")
    table.create(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"id": 1, "url": "https://a.example/x", "doc": {"phone": "+15550100"}}])
        raw = conn.exec_driver_sql("SELECT url, doc FROM secrets_at_rest").one()
    assert "example" not in raw.url and "+1555" not in raw.doc

    keyed.setenv("ENNU_DATA_KEY", new)
    keyed.setenv("ENNU_DATA_KEYS_PREVIOUS", old)
    reload_settings()
    with engine.begin() as conn:  # the old key still decrypts while it is listed as previous
        row = conn.execute(select(table.c.url, table.c.doc)).one()
    assert tuple(row) == ("https://a.example/x", {"phone": "+15550100"})

    keyed.delenv("ENNU_DATA_KEYS_PREVIOUS")
    reload_settings()
    with engine.begin() as conn, pytest.raises(crypto.UndecryptableValue):
        conn.execute(select(table.c.url)).one()

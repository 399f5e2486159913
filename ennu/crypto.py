"""Encryption at rest of the sensitive values the hub keeps (Zapier hook URLs, stored webhook payloads).

Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) under ENNU_DATA_KEY. A column declared
`EncryptedText` or `EncryptedJSON` holds only ciphertext in the database; the model reads and writes plain
values. Outside local mode a missing key is an error, never a silent plain-text fallback; in local mode
(ENNU_ENV=local) a published development key stands in, like the other local-only keys.

Rotation: `python -m ennu.crypto new-key` makes a key; set it as ENNU_DATA_KEY and the old one in
ENNU_DATA_KEYS_PREVIOUS (values under either still decrypt), run `python -m ennu.crypto rotate` to re-encrypt
every encrypted column under the new key, then remove the old key.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from ennu.settings import get_settings

# Published, local mode only (ENNU_ENV=local): derived from a fixed phrase, so every local process agrees.
DEVELOPMENT_KEY = base64.urlsafe_b64encode(hashlib.sha256(b"ennu-development-data-key-not-a-secret").digest())


class DataKeyMissing(RuntimeError):
    """ENNU_DATA_KEY is not set outside local mode: sensitive values would be kept in plain text."""


class DataKeyInvalid(ValueError):
    """A configured data key is not a Fernet key (32 url-safe base64-encoded bytes)."""


class UndecryptableValue(ValueError):
    """A stored value does not decrypt under any configured key (wrong key, or the key was rotated away)."""


def _keys() -> list[bytes]:
    settings = get_settings()
    current = settings.data_key.get_secret_value().strip() if settings.data_key is not None else ""
    if not current:
        if not settings.local:
            raise DataKeyMissing("ENNU_DATA_KEY is not set (required unless ENNU_ENV=local)")
        current = DEVELOPMENT_KEY.decode()
    previous = settings.data_keys_previous.get_secret_value() if settings.data_keys_previous else ""
    return [current.encode(), *(k.strip().encode() for k in previous.split(",") if k.strip())]


@lru_cache(maxsize=4)
def _cipher_for(keys: tuple[bytes, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise DataKeyInvalid(
            "ENNU_DATA_KEY or ENNU_DATA_KEYS_PREVIOUS is not a Fernet key (python -m ennu.crypto new-key)"
        ) from None


def cipher() -> MultiFernet:
    """The cipher of the configured keys: encrypts under ENNU_DATA_KEY, decrypts under any of them."""
    return _cipher_for(tuple(_keys()))


def check_data_key() -> None:
    """Fail at start-up, naming the variable, when the key is missing (outside local mode) or malformed."""
    cipher()


def encrypt(text: str) -> str:
    return cipher().encrypt(text.encode()).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return cipher().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeEncodeError):
        raise UndecryptableValue("a stored value does not decrypt under ENNU_DATA_KEY(S_PREVIOUS)") from None


class EncryptedText(TypeDecorator[str]):
    """A text column kept encrypted: the model sees the plain string, the database only ciphertext."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else decrypt(value)


class EncryptedJSON(TypeDecorator[Any]):
    """A JSON document kept encrypted (as one ciphertext): the model sees the document."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else encrypt(json.dumps(value, separators=(",", ":"), allow_nan=False))

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(decrypt(value))


def encrypted_columns() -> list[tuple[str, str, str]]:
    """(table, primary-key column, column) of every encrypted column of the hub's models."""
    from ennu.models import Base

    found = []
    for table in Base.metadata.sorted_tables:
        (key,) = table.primary_key.columns
        for column in table.columns:
            if isinstance(column.type, EncryptedText | EncryptedJSON):
                found.append((table.name, key.name, column.name))
    return found


def rotate(database_url: str | None = None) -> int:
    """Re-encrypt every encrypted value under the current key; the number of values rewritten."""
    from sqlalchemy import text

    from ennu.db import get_engine

    rewritten = 0
    current = cipher()
    with get_engine(database_url).begin() as conn:
        for table, key, column in encrypted_columns():
            rows = conn.execute(text(f"SELECT {key}, {column} FROM {table} WHERE {column} IS NOT NULL"))  # noqa: S608 - names from our own models
            for row_key, token in rows.all():
                try:
                    renewed = current.rotate(token.encode("ascii")).decode("ascii")
                except InvalidToken:
                    raise UndecryptableValue(
                        f"{table}.{column}: a value does not decrypt under the configured keys"
                    ) from None
                if renewed != token:
                    conn.execute(
                        text(f"UPDATE {table} SET {column} = :value WHERE {key} = :key"),  # noqa: S608
                        {"value": renewed, "key": row_key},
                    )
                    rewritten += 1
    return rewritten


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ennu.crypto", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("new-key", help="print a new Fernet key for ENNU_DATA_KEY")
    commands.add_parser("rotate", help="re-encrypt every stored value under ENNU_DATA_KEY")
    args = parser.parse_args(argv)
    if args.command == "new-key":
        print(Fernet.generate_key().decode())
    else:
        print(f"re-encrypted {rotate()} values under ENNU_DATA_KEY")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

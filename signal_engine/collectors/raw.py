"""Raw payloads: what a source answered, kept byte for byte in the object store before any parsing."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime

from signal_engine.errors import SignalEngineError

RAW_PREFIX = "raw"
ENVELOPE_VERSION = 1


class RawPayloadError(SignalEngineError):
    """A stored raw object that is not a payload envelope."""


@dataclass(frozen=True)
class RawPayload:
    """One response of a source, with what was asked for and when.

    ``key`` is content-addressed within a fetch day: the same body fetched again that day lands on the
    same key (no duplicate object); a changed body gets a new one.
    """

    source: str
    kind: str
    symbol: str
    url: str
    fetched_at: datetime
    status: int
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.source} {self.kind} {self.symbol}"

    @property
    def digest(self) -> str:
        request = json.dumps([self.url, sorted(self.params.items())]).encode()
        return hashlib.sha256(request + b"\0" + self.body).hexdigest()[:24]

    @property
    def key(self) -> str:
        return (f"{RAW_PREFIX}/{self.source}/{self.kind}/{self.symbol}/{self.fetched_at:%Y-%m-%d}/"
                f"{self.digest}.json")

    def encode(self) -> bytes:
        """The envelope: JSON with the body as UTF-8 text when it is, base64 otherwise."""
        try:
            body, encoding = self.body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            body, encoding = base64.b64encode(self.body).decode("ascii"), "base64"
        return json.dumps({"envelope": ENVELOPE_VERSION, "source": self.source, "kind": self.kind,
                           "symbol": self.symbol, "url": self.url, "params": self.params,
                           "fetched_at": self.fetched_at.isoformat(), "status": self.status,
                           "body_encoding": encoding, "body": body}, ensure_ascii=False).encode("utf-8")

    @classmethod
    def decode(cls, data: bytes, key: str) -> RawPayload:
        """Read an envelope written by :meth:`encode`; anything else is a RawPayloadError naming the key."""
        try:
            envelope = json.loads(data)
            body_text: str = envelope["body"]
            body = base64.b64decode(body_text) if envelope["body_encoding"] == "base64" else body_text.encode()
            return cls(source=envelope["source"], kind=envelope["kind"], symbol=envelope["symbol"],
                       url=envelope["url"], params=dict(envelope["params"]),
                       fetched_at=datetime.fromisoformat(envelope["fetched_at"]), status=int(envelope["status"]),
                       body=body)
        except (ValueError, KeyError, TypeError) as exc:
            raise RawPayloadError(f"{key}: not a raw payload envelope ({type(exc).__name__}: {exc})") from None

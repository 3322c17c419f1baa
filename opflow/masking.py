"""Secret values kept out of everything opflow writes: records, the journal, the console, task logs.

A run's secrets are the values of its `secret: true` params and every value its
`env_file` provides (workflow/spec.py finds them). opflow writes each as `***`:

- `Masker.mask(value)`: a copy of a JSON-like value (an event, a record, argv) with
  every occurrence in its strings (keys too) replaced; the coordinator masks each
  event before any reporter sees it, so the audit trail and the console never hold one;
- `StreamMasker`: the same over a byte stream cut into arbitrary chunks (a task's
  output as it streams to tasks/<id>.log): a secret split across two writes is
  still caught, by holding back at most len(longest secret) - 1 bytes (and only
  while they could begin one) until the next chunk or the end;
- `Masker.keyed(value)`: each secret replaced by its sha256 instead, for what must
  tell two values apart without holding them (cache keys, resume's comparison).

The task itself gets the real values: masking is for what opflow writes, never for
what it hands a plugin.
"""
from __future__ import annotations

__all__ = ["Masker", "StreamMasker", "MASK", "MIN_SECRET_LENGTH", "digest", "NO_SECRETS"]

import hashlib
from typing import Any, Callable, Iterable

MASK = "***"
#: Shorter values cannot be masked without garbling the record (a secret "1" would
#: mask every 1 in every timestamp): a secret param shorter than this is refused.
MIN_SECRET_LENGTH = 4


def digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


class Masker:
    """The secret values of one run (texts), longest first so that one holding
    another is masked whole."""

    def __init__(self, values: Iterable[str] = ()):
        self.values = tuple(sorted({v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH},
                                   key=lambda v: (-len(v), v)))

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, text: str, replace: Callable[[str], str] | None = None) -> str:
        for value in self.values:
            if value in text:
                text = text.replace(value, replace(value) if replace else MASK)
        return text

    def mask(self, value: Any, replace: Callable[[str], str] | None = None) -> Any:
        """`value` with every secret in its strings written `***` (or `replace(secret)`);
        the very object where there is nothing to mask."""
        if not self.values:
            return value
        if isinstance(value, str):
            return self.text(value, replace)
        if isinstance(value, dict):
            return {self.mask(k, replace) if isinstance(k, str) else k: self.mask(v, replace) for k, v in value.items()}
        if isinstance(value, list):
            return [self.mask(v, replace) for v in value]
        if isinstance(value, tuple):
            return tuple(self.mask(v, replace) for v in value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text = str(value)  # a secret PIN is a number in run.json's params: it becomes text there
            masked = self.text(text, replace)
            return value if masked == text else masked
        return value

    def keyed(self, value: Any) -> Any:
        """`value` with each secret replaced by its digest: equal values, equal keys; no value kept."""
        return self.mask(value, digest)

    def found_in(self, data: bytes) -> bool:
        """Whether any secret's UTF-8 bytes are in `data` (a pickled result, say)."""
        return any(v.encode("utf-8") in data for v in self.values)

    def stream(self, write: Callable[[bytes], None]) -> "StreamMasker":
        return StreamMasker(self.values, write)


NO_SECRETS = Masker()


class StreamMasker:
    """Masks a byte stream written in chunks; `write` gets what is safe to show.

    Bytes that could be the start of a secret wait for the next chunk (or `close`):
    never more than len(longest secret) - 1 of them, so memory stays bounded."""

    def __init__(self, values: Iterable[str], write: Callable[[bytes], None]):
        self._secrets = sorted({v.encode("utf-8") for v in values if v}, key=len, reverse=True)
        self._write = write
        self._pending = b""
        self._mask = MASK.encode()

    @property
    def held(self) -> int:
        """Bytes held back now, waiting to tell whether they begin a secret."""
        return len(self._pending)

    def feed(self, data: bytes) -> None:
        if not self._secrets:
            self._write(data)
            return
        buffer = self._pending + bytes(data)
        out = []
        at = 0
        while True:
            found, length = -1, 0
            for secret in self._secrets:  # the earliest occurrence; at one place, the longest secret
                where = buffer.find(secret, at)
                if where >= 0 and (found < 0 or where < found):
                    found, length = where, len(secret)
            if found < 0:
                break
            out.append(buffer[at:found])
            out.append(self._mask)
            at = found + length
        rest = buffer[at:]
        hold = self._held(rest)
        out.append(rest[:len(rest) - hold])
        self._pending = rest[len(rest) - hold:]
        shown = b"".join(out)
        if shown:
            self._write(shown)

    def _held(self, rest: bytes) -> int:
        """How many bytes at the end of `rest` may begin a secret (the longest such suffix)."""
        longest = max(len(s) for s in self._secrets) - 1
        for size in range(min(len(rest), longest), 0, -1):
            tail = rest[-size:]
            if any(s.startswith(tail) for s in self._secrets):
                return size
        return 0

    def close(self) -> None:
        """The stream ended: what was held back is no secret's start after all."""
        pending, self._pending = self._pending, b""
        if pending:
            self._write(pending)

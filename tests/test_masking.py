"""opflow/masking.py: a secret is masked wherever the chunks of a stream cut it, and
no more than len(secret) - 1 bytes are ever held back."""
from __future__ import annotations

import random

from opflow.masking import MASK, Masker, StreamMasker


def _streamed(values, chunks) -> tuple[bytes, int]:
    out = []
    masker = StreamMasker(values, out.append)
    held = 0
    for chunk in chunks:
        masker.feed(chunk)
        held = max(held, masker.held)
    masker.close()
    return b"".join(out), held


def test_a_secret_cut_at_any_byte_is_masked():
    secret = "s3cr3t-value"
    text = f"before {secret} middle {secret}{secret} end".encode()
    expected = text.replace(secret.encode(), MASK.encode())
    for cut in range(len(text) + 1):
        got, _ = _streamed([secret], [text[:cut], text[cut:]])
        assert got == expected, cut


def test_random_chunks_overlapping_secrets_and_a_bounded_hold():
    rng = random.Random(7)
    values = ["abcabcX", "cab-9", "zzzz"]
    alphabet = "abcXz9- "
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        text += rng.choice(values) + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        data = text.encode()
        cuts = sorted(rng.sample(range(len(data) + 1), k=min(len(data) + 1, rng.randint(1, 8))))
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        got, held = _streamed(values, chunks)
        assert got == Masker(values).text(text).encode(), (text, chunks)
        assert held <= max(map(len, values)) - 1


def test_values_are_masked_in_keys_and_nested_values_and_keyed_by_digest():
    masker = Masker(["tok-1234", "", "ab"])  # empty and short values are no secrets
    assert masker.values == ("tok-1234",)
    doc = {"argv": ["--param", "token=tok-1234"], "tok-1234": ("x tok-1234",), "n": 1}
    assert masker.mask(doc) == {"argv": ["--param", "token=***"], "***": ("x ***",), "n": 1}
    keyed = masker.keyed({"t": "tok-1234"})["t"]
    assert keyed.startswith("sha256:") and "tok-1234" not in keyed

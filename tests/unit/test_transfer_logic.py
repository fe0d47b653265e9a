"""Pure pieces of the transfer engine: delta arithmetic, framing, hashes, throttle, tokens."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zstandard

from berth_agent.transfer import frames
from berth_agent.transfer.extents import (
    FIEMAP_EXTENT_DELALLOC,
    Extent,
    block_runs,
    changed_ranges,
    merge_ranges,
    subtract_ranges,
    to_blocks,
)
from berth_agent.transfer.hashtree import ZERO_HASH, BlockHashes, block_hash
from berth_agent.transfer.plan import plan_delta_from_extents, plan_full
from berth_agent.transfer.throttle import Throttle
from berth_common import tokens
from berth_common.pki import CertFiles, create_ca, issue
from berth_common.units import human_bytes

pytestmark = pytest.mark.unit
KiB, MiB = 1024, 1024 * 1024
BS = 64 * KiB


def test_merge_and_subtract_ranges() -> None:
    assert merge_ranges([(10, 20), (0, 5), (5, 7), (15, 30), (40, 40)]) == [(0, 7), (10, 30)]
    assert subtract_ranges([(0, 100)], [(10, 20), (50, 60)]) == [(0, 10), (20, 50), (60, 100)]
    assert subtract_ranges([(0, 10), (20, 30)], [(5, 25)]) == [(0, 5), (25, 30)]
    assert subtract_ranges([(0, 10)], []) == [(0, 10)]


def test_unchanged_reflink_has_no_delta() -> None:
    base = [Extent(0, 1_000_000, 4 * MiB), Extent(8 * MiB, 9_000_000, MiB)]
    assert changed_ranges(list(base), base) == ([], [])


def test_rewritten_range_is_the_delta() -> None:
    base = [Extent(0, 100 * MiB, 8 * MiB)]
    # The image rewrote [2 MiB, 3 MiB): that range now lives elsewhere on disk.
    image = [
        Extent(0, 100 * MiB, 2 * MiB),
        Extent(2 * MiB, 500 * MiB, MiB),
        Extent(3 * MiB, 103 * MiB, 5 * MiB),
    ]
    data, holes = changed_ranges(image, base)
    assert data == [(2 * MiB, 3 * MiB)] and holes == []


def test_new_extents_and_punched_holes() -> None:
    base = [Extent(0, 100 * MiB, MiB), Extent(4 * MiB, 104 * MiB, MiB)]
    image = [Extent(0, 100 * MiB, MiB), Extent(10 * MiB, 700 * MiB, MiB)]
    data, holes = changed_ranges(image, base)
    assert data == [(10 * MiB, 11 * MiB)]
    assert holes == [(4 * MiB, 5 * MiB)]


def test_same_physical_at_another_logical_offset_is_a_change() -> None:
    base = [Extent(0, 100 * MiB, MiB)]
    image = [Extent(MiB, 100 * MiB, MiB)]  # moved data: the mapping differs
    data, holes = changed_ranges(image, base)
    assert data == [(MiB, 2 * MiB)] and holes == [(0, MiB)]


def test_unstable_extents_always_count_as_changed() -> None:
    base = [Extent(0, 100 * MiB, MiB)]
    image = [Extent(0, 100 * MiB, MiB, FIEMAP_EXTENT_DELALLOC)]
    assert changed_ranges(image, base)[0] == [(0, MiB)]


def test_blocks_and_runs() -> None:
    assert to_blocks([(0, 1)], BS, 10 * BS) == [0]
    assert to_blocks([(BS - 1, BS + 1)], BS, 10 * BS) == [0, 1]
    assert to_blocks([(0, BS), (BS, 2 * BS)], BS, 10 * BS) == [0, 1]
    assert to_blocks([(9 * BS, 20 * BS)], BS, 10 * BS) == [9]  # clipped to the image
    assert block_runs([0, 1, 2, 5, 6, 9], max_run=2) == [(0, 2), (2, 1), (5, 2), (9, 1)]


def test_plans_cost_what_changed() -> None:
    size = 2048 * MiB
    full = plan_full(size, [(0, 300 * MiB)], BS)
    assert full.bytes_planned == 300 * MiB
    base = [Extent(0, 10**9, 300 * MiB)]
    image = [
        Extent(0, 10**9, 100 * MiB),
        Extent(100 * MiB, 5 * 10**9, 50 * MiB),
        Extent(150 * MiB, 10**9 + 150 * MiB, 150 * MiB),
    ]
    delta = plan_delta_from_extents(size, image, base, BS)
    assert delta.mode == "delta" and delta.bytes_planned == 50 * MiB


def test_frames_round_trip_in_any_chunking() -> None:
    data = bytes(range(256)) * (3 * BS // 256)
    raw, digests = frames.encode(7, data, BS)
    packed, _ = frames.encode(10, bytes(2 * BS), BS, zstandard.ZstdCompressor())
    stream = raw + frames.encode_zero(20, 4) + packed
    assert len(packed) < BS  # zeros compress
    for chunk_size in (1, 17, 4096, len(stream)):
        decoder = frames.Decoder(BS)
        got: list[tuple[frames.Frame, bytes]] = []
        for i in range(0, len(stream), chunk_size):
            got.extend(decoder.feed(stream[i : i + chunk_size]))
        assert [(f.kind, f.first_block, f.count) for f, _ in got] == [
            (frames.RAW, 7, 3),
            (frames.ZERO, 20, 4),
            (frames.ZSTD, 10, 2),
        ]
        assert got[0][1] == data and got[2][1] == bytes(2 * BS)
        assert decoder.pending() == 0
    assert digests[:16] == block_hash(data[:BS])


def test_a_corrupted_frame_is_refused() -> None:
    raw, _ = frames.encode(0, b"x" * BS, BS)
    corrupt = raw[:-1] + b"y"
    with pytest.raises(frames.FrameError, match="block 0: checksum mismatch"):
        list(frames.Decoder(BS).feed(corrupt))
    with pytest.raises(frames.FrameError, match="bad frame header"):
        list(frames.Decoder(BS).feed(b"\x09" + raw[1:]))


def test_a_truncated_stream_leaves_a_pending_frame() -> None:
    raw, _ = frames.encode(0, b"x" * BS, BS)
    decoder = frames.Decoder(BS)
    assert list(decoder.feed(raw[:-10])) == []
    assert decoder.pending() == len(raw) - 10


def test_hash_tree_root_follows_changed_blocks_only() -> None:
    hashes = BlockHashes.of_zeros(4 * BS)
    empty_root = hashes.root()
    assert hashes.get(3) == ZERO_HASH
    hashes.set(2, block_hash(b"a" * BS))
    assert hashes.root() != empty_root
    other = BlockHashes.of_zeros(4 * BS)
    other.set(2, block_hash(b"a" * BS))
    assert other.root() == hashes.root()
    assert BlockHashes.of_zeros(8 * BS).root() != empty_root  # size is part of the digest


def test_throttle_spreads_bytes_over_time() -> None:
    throttle = Throttle(1_000_000, burst=100_000)
    assert throttle.delay(100_000, now=0.0) == 0
    assert throttle.delay(500_000, now=0.0) == pytest.approx(0.5)
    assert Throttle(None).delay(10**9, now=0.0) == 0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertFiles]:
    d = tmp_path_factory.mktemp("pki")
    ca = create_ca(CertFiles(d / "ca.crt", d / "ca.key"))
    rogue_ca = create_ca(CertFiles(d / "rogue-ca.crt", d / "rogue-ca.key"))
    return {
        "ca": ca,
        "operator": issue(ca, CertFiles(d / "op.crt", d / "op.key"), tokens.OPERATOR_CN),
        "host-a": issue(ca, CertFiles(d / "a.crt", d / "a.key"), "host-a"),
        "host-c": issue(ca, CertFiles(d / "c.crt", d / "c.key"), "host-c"),
        "rogue": issue(rogue_ca, CertFiles(d / "r.crt", d / "r.key"), tokens.OPERATOR_CN),
    }


def test_tokens_verify_claims(pki: dict[str, CertFiles]) -> None:
    ca: Path = pki["ca"].cert
    token = tokens.issue("m1", "guid-1", "host-a", "host-b", pki["operator"])
    claims = tokens.verify(token, ca, target="host-b", repository="guid-1", transfer_id="m1")
    assert (claims.source, claims.target) == ("host-a", "host-b")
    # The source agent may sign its own push; another agent may not.
    tokens.verify(tokens.issue("m1", "g", "host-a", "host-b", pki["host-a"]), ca, target="host-b")
    with pytest.raises(tokens.TokenError, match="may not authorise"):
        tokens.verify(
            tokens.issue("m1", "g", "host-a", "host-b", pki["host-c"]), ca, target="host-b"
        )
    for kwargs, words in (
        ({"target": "host-c"}, "target"),
        ({"target": "host-b", "repository": "other"}, "repository"),
        ({"target": "host-b", "transfer_id": "m2"}, "transfer_id"),
        ({"target": "host-b", "now": time.time() + 3600}, "expired"),
    ):
        with pytest.raises(tokens.TokenError, match=words):
            tokens.verify(token, ca, **kwargs)


def test_a_token_from_before_the_claim_was_renamed_still_verifies(
    pki: dict[str, CertFiles], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator and its agents are upgraded one after the other."""
    legacy = {"migration_id": "t1", "repository": "g", "source": "host-a", "target": "host-b"}
    monkeypatch.setattr(
        tokens, "asdict", lambda claims: {**legacy, "expires_at": claims.expires_at}
    )
    token = tokens.issue("ignored", "g", "host-a", "host-b", pki["operator"])
    monkeypatch.undo()
    claims = tokens.verify(token, pki["ca"].cert, target="host-b", transfer_id="t1")
    assert claims.transfer_id == "t1"


def test_forged_and_foreign_tokens_are_refused(pki: dict[str, CertFiles]) -> None:
    ca = pki["ca"].cert
    foreign = tokens.issue("m1", "g", "host-a", "host-b", pki["rogue"])
    with pytest.raises(tokens.TokenError, match="not trusted"):
        tokens.verify(foreign, ca, target="host-b")
    token = tokens.issue("m1", "g", "host-a", "host-b", pki["operator"])
    cert, body, sig = token.split(".")
    forged_body = tokens._b64(tokens._unb64(body).replace(b"host-b", b"host-x"))
    with pytest.raises(tokens.TokenError, match="not trusted"):
        tokens.verify(f"{cert}.{forged_body}.{sig}", ca, target="host-x")
    with pytest.raises(tokens.TokenError, match="malformed"):
        tokens.verify("garbage", ca, target="host-b")


def test_rates_people_type() -> None:
    from berth_common.units import parse_rate

    assert parse_rate("50M") == 50e6 and parse_rate("1.5G") == 1.5e9 and parse_rate("800") == 800
    for bad in ("fast", "0", "-5M", "5T"):
        with pytest.raises(ValueError, match="bandwidth"):
            parse_rate(bad)


@pytest.mark.parametrize(
    ("n", "binary", "text"),
    [
        (None, False, "-"),
        (999, False, "999 B"),
        (1000, False, "1.0 KB"),
        (222_700_000, False, "222.7 MB"),
        (3 * 2**20, True, "3.0 MiB"),
        (1023, True, "1023 B"),
        (5 * 2**50, True, "5120.0 TiB"),
    ],
)
def test_human_bytes(n: float | None, binary: bool, text: str) -> None:
    assert human_bytes(n, binary=binary) == text

"""The lab's DNS stand-in: what external-dns would publish, and the wire format."""

from __future__ import annotations

from typing import Any

import pytest

from berth_lab.dns import decode_answer, encode_answer, encode_query, records_of

pytestmark = pytest.mark.unit

ENDPOINTS: list[dict[str, Any]] = [
    {"spec": {"endpoints": [
        {"dnsName": "Pulse.Demo.Lab", "recordType": "A", "recordTTL": 2, "targets": ["10.1.0.3"]},
        {"dnsName": "v6.demo.lab", "recordType": "AAAA", "recordTTL": 2, "targets": ["fd00::3"]},
    ]}},
    {"spec": {}},
]  # fmt: skip


def test_records_are_the_a_records_of_every_dns_endpoint() -> None:
    assert records_of(ENDPOINTS) == {"pulse.demo.lab": (["10.1.0.3"], 2)}


def test_a_query_is_answered_with_its_records_and_ttl() -> None:
    records = records_of(ENDPOINTS)
    answer = encode_answer(encode_query("pulse.demo.lab", 7), records)
    assert answer[:2] == b"\x00\x07"  # the query's id
    assert decode_answer(answer) == (["10.1.0.3"], 2)


def test_an_unknown_name_is_nxdomain() -> None:
    answer = encode_answer(encode_query("nope.demo.lab", 9), records_of(ENDPOINTS))
    assert decode_answer(answer) == ([], 0)

"""registry/kube/protobuf.py: Kubernetes' protobuf wire format as client-go sends it (the
`kubectl auth can-i` reviews). Bodies are built here by a small encoder written from the
protobuf encoding spec (varints, keys = field number << 3 | wire type, length-delimited
fields) and the field numbers of k8s.io/api/authorization/v1/generated.proto and
k8s.io/apimachinery/pkg/runtime/generated.proto, not by the module under test."""

from __future__ import annotations

import random
import struct

import pytest

from registry.kube.authorization_v1 import SELF_SUBJECT_ACCESS_REVIEWS, SELF_SUBJECT_RULES_REVIEWS
from registry.kube.protobuf import MAGIC, ProtobufError, decode, decode_object

SSAR = SELF_SUBJECT_ACCESS_REVIEWS.protobuf
SSRR = SELF_SUBJECT_RULES_REVIEWS.protobuf
API_VERSION = "authorization.k8s.io/v1"

# -- a protobuf encoder, from the spec ------------------------------------------------------

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5


def varint(n: int) -> bytes:
    """Base-128, least significant group first, high bit set on all but the last byte;
    negative numbers as their 64-bit two's complement (10 bytes), as int64 fields are."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def ld(number: int, payload: bytes | str) -> bytes:
    """A length-delimited field (string, bytes or embedded message)."""
    data = payload.encode() if isinstance(payload, str) else payload
    return key(number, LEN) + varint(len(data)) + data


def vi(number: int, value: int) -> bytes:
    return key(number, VARINT) + varint(value)


def fixed64(number: int, value: int) -> bytes:
    return key(number, I64) + struct.pack("<Q", value)


def fixed32(number: int, value: int) -> bytes:
    return key(number, I32) + struct.pack("<I", value)


def envelope(raw: bytes, kind: str = "SelfSubjectAccessReview", api_version: str = API_VERSION, **extra) -> bytes:
    """The "k8s\\0" magic, then runtime.Unknown: typeMeta = 1 (TypeMeta: apiVersion = 1,
    kind = 2), raw = 2, contentEncoding = 3, contentType = 4. client-go's generated marshaller
    writes every non-pointer field, empty strings included."""
    type_meta = ld(1, api_version) + ld(2, kind)
    encoding = extra.get("content_encoding", "")
    return MAGIC + ld(1, type_meta) + ld(2, raw) + ld(3, encoding) + ld(4, extra.get("content_type", ""))


def object_meta(name: str = "", namespace: str = "") -> bytes:
    """metav1.ObjectMeta as client-go writes an empty one: name = 1, generateName = 2,
    namespace = 3, selfLink = 4, uid = 5, resourceVersion = 6, generation = 7 (varint),
    creationTimestamp = 8 (Time: seconds = 1, nanos = 2), ..."""
    strings = ld(1, name) + ld(2, "") + ld(3, namespace) + ld(4, "") + ld(5, "") + ld(6, "")
    return strings + vi(7, 0) + ld(8, vi(1, 0) + vi(2, 0))


def resource_attributes(
    namespace: str = "",
    verb: str = "",
    group: str = "",
    version: str = "",
    resource: str = "",
    subresource: str = "",
    name: str = "",
) -> bytes:
    """ResourceAttributes: namespace = 1, verb = 2, group = 3, version = 4, resource = 5,
    subresource = 6, name = 7 (fieldSelector = 8 and labelSelector = 9 are messages)."""
    values = (namespace, verb, group, version, resource, subresource, name)
    return b"".join(ld(number, value) for number, value in enumerate(values, start=1))


def ssar(spec: bytes, status: bytes | None = None) -> bytes:
    """SelfSubjectAccessReview: metadata = 1, spec = 2 (SelfSubjectAccessReviewSpec:
    resourceAttributes = 1, nonResourceAttributes = 2), status = 3 (SubjectAccessReviewStatus:
    allowed = 1, reason = 2, evaluationError = 3, denied = 4)."""
    if status is None:
        status = vi(1, 0) + ld(2, "") + ld(3, "") + vi(4, 0)
    return ld(1, object_meta()) + ld(2, spec) + ld(3, status)


def can_i_body(**attributes: str) -> bytes:
    """What `kubectl auth can-i VERB RESOURCE` sends."""
    return envelope(ssar(ld(1, resource_attributes(**attributes))))


EMPTY_ATTRIBUTES = dict.fromkeys(("namespace", "verb", "group", "version", "resource", "subresource", "name"), "")


def expected_can_i(**attributes: str) -> dict:
    return {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": API_VERSION,
        "spec": {"resourceAttributes": {**EMPTY_ATTRIBUTES, **attributes}},
    }


def test_the_encoder_follows_the_spec():
    """The spec's own examples: 150 is 96 01, field 1 = 150 is 08 96 01, field 2 = "testing"
    is 12 07 74 65 73 74 69 6e 67; -1 as int64 is ten bytes."""
    assert varint(150) == b"\x96\x01"
    assert vi(1, 150) == b"\x08\x96\x01"
    assert ld(2, "testing") == bytes.fromhex("120774657374696e67")
    assert varint(-1) == b"\xff" * 9 + b"\x01"
    assert varint(0) == b"\x00"


# -- what decodes ------------------------------------------------------------------------


def test_a_self_subject_access_review_as_kubectl_sends_it():
    attributes = {
        "namespace": "team",
        "verb": "get",
        "group": "image.openshift.io",
        "version": "v1",
        "resource": "imagestreams",
        "subresource": "layers",
        "name": "app",
    }
    assert decode_object(can_i_body(**attributes), SSAR) == expected_can_i(**attributes)


def test_empty_strings_are_kept_and_metadata_and_status_are_skipped():
    """`kubectl auth can-i list is`: most attributes empty; metadata and status (field 1
    and 3 of the review) are not in the module's message and are skipped whole."""
    body = can_i_body(verb="list", resource="imagestreams")
    decoded = decode_object(body, SSAR)
    assert decoded == expected_can_i(verb="list", resource="imagestreams")
    assert "metadata" not in decoded and "status" not in decoded


def test_non_resource_attributes():
    spec = ld(2, ld(1, "/healthz") + ld(2, "get"))  # NonResourceAttributes: path = 1, verb = 2
    decoded = decode_object(envelope(ssar(spec)), SSAR)
    assert decoded["spec"] == {"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}


def test_a_self_subject_rules_review():
    """`kubectl auth can-i --list -n team`: SelfSubjectRulesReview spec = 2
    (SelfSubjectRulesReviewSpec: namespace = 1)."""
    body = envelope(ld(1, object_meta()) + ld(2, ld(1, "team")) + ld(3, b""), kind="SelfSubjectRulesReview")
    assert decode_object(body, SSRR) == {
        "kind": "SelfSubjectRulesReview",
        "apiVersion": API_VERSION,
        "spec": {"namespace": "team"},
    }


def test_field_order_does_not_matter():
    """Encoders may write fields in any order (the spec requires parsers to accept that)."""
    attrs = [ld(5, "imagestreams"), ld(2, "get"), ld(1, "team"), ld(7, "app")]
    raw = ld(3, b"") + ld(2, ld(1, b"".join(reversed(attrs)))) + ld(1, object_meta())
    type_meta = ld(2, "SelfSubjectAccessReview") + ld(1, API_VERSION)
    body = MAGIC + ld(4, "") + ld(2, raw) + ld(1, type_meta)
    assert decode_object(body, SSAR) == {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": API_VERSION,
        "spec": {"resourceAttributes": {"name": "app", "namespace": "team", "verb": "get", "resource": "imagestreams"}},
    }


def test_the_last_of_a_repeated_scalar_field_wins():
    """Spec: for a non-repeated scalar field seen more than once, the parser takes the last."""
    raw = ssar(ld(1, ld(2, "delete") + ld(5, "images") + ld(2, "get")))
    assert decode_object(envelope(raw), SSAR)["spec"]["resourceAttributes"] == {"verb": "get", "resource": "images"}


def test_non_ascii_strings():
    decoded = decode_object(can_i_body(name="app-ß-✓", resource="imagestreams"), SSAR)
    assert decoded["spec"]["resourceAttributes"]["name"] == "app-ß-✓"


def test_missing_parts_decode_to_what_is_there():
    """Absent fields are absent (the API layer checks what it needs): no raw object, no
    typeMeta, an empty spec."""
    assert decode_object(MAGIC, SSAR) == {"kind": "", "apiVersion": ""}
    assert decode_object(MAGIC + ld(2, b""), SSAR) == {"kind": "", "apiVersion": ""}
    assert decode_object(envelope(ld(2, b"")), SSAR)["spec"] == {}


UNKNOWN_FIELDS = (
    vi(15, 12345)
    + vi(16, -1)  # a ten-byte varint
    + fixed64(17, 0xFFFF_FFFF_FFFF_FFFF)
    + fixed32(18, 7)
    + ld(19, ld(1, ld(1, "nested")))
    + ld(2**29 - 1, b"\xff\xfe")  # the largest field number; its key is a five-byte varint
)


def test_unknown_fields_of_every_wire_type_are_skipped_at_every_level():
    """Fields a newer client might send (fieldSelector = 8 and labelSelector = 9 of
    ResourceAttributes, anything else) are skipped, in the envelope, its typeMeta, the
    review, its spec and the attributes."""
    field_selector = ld(1, "metadata.name=app") + ld(2, ld(1, "metadata.name") + ld(2, "In") + ld(3, "app"))
    attributes = resource_attributes(verb="get", resource="imagestreams") + ld(8, field_selector) + ld(9, b"")
    spec = UNKNOWN_FIELDS + ld(1, attributes + UNKNOWN_FIELDS) + UNKNOWN_FIELDS
    raw = UNKNOWN_FIELDS + ssar(spec) + UNKNOWN_FIELDS
    type_meta = UNKNOWN_FIELDS + ld(1, API_VERSION) + UNKNOWN_FIELDS + ld(2, "SelfSubjectAccessReview")
    body = MAGIC + UNKNOWN_FIELDS + ld(1, type_meta) + ld(2, raw) + ld(3, "") + UNKNOWN_FIELDS + ld(4, "")
    assert decode_object(body, SSAR) == expected_can_i(verb="get", resource="imagestreams")


def test_the_scalar_kinds_of_a_message():
    """decode() with a message using each kind the module offers."""
    message = {1: ("flag", "bool"), 2: ("count", "int"), 3: ("items", "strings"), 4: ("blob", "bytes")}
    data = vi(1, 1) + vi(2, 300) + ld(3, "a") + ld(3, "") + ld(3, "c") + ld(4, b"\x00\xff")
    assert decode(data, message) == {"flag": True, "count": 300, "items": ["a", "", "c"], "blob": b"\x00\xff"}
    assert decode(vi(1, 0), message) == {"flag": False}
    assert decode(b"", message) == {}


# -- what is refused ---------------------------------------------------------------------


def refused(body: bytes, message=SSAR) -> str:
    with pytest.raises(ProtobufError) as info:
        decode_object(body, message)
    return str(info.value)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"k8s",
        b"k8s\x01" + can_i_body(verb="get")[4:],
        b"K8S\x00" + can_i_body(verb="get")[4:],
        b'{"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1"}',
        can_i_body(verb="get")[4:],  # the Unknown without its magic
    ],
    ids=["empty", "short-magic", "magic-version-1", "magic-upper-case", "json", "no-magic"],
)
def test_a_body_without_the_envelope_magic(body):
    assert "magic" in refused(body)


def test_a_compressed_object_is_refused():
    """runtime.Unknown's contentEncoding (e.g. gzip) is not supported: refused, not misread."""
    body = envelope(ssar(ld(1, resource_attributes(verb="get"))), content_encoding="gzip")
    assert "gzip" in refused(body)


def top_level_fields(body: bytes) -> list[tuple[int, int]]:
    """(start, end) of each length-delimited field of an envelope built here (after the magic)."""
    spans, pos = [], len(MAGIC)
    while pos < len(body):
        start = pos
        pos += 1  # every key here is one byte
        size = shift = 0
        while True:
            byte = body[pos]
            pos += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        pos += size
        spans.append((start, pos))
    return spans


def test_every_truncation_is_refused_or_decodes_what_came_whole():
    """A body cut at any byte: a cut inside a field of the envelope is a ProtobufError; a cut
    between fields is a shorter valid message; nothing else is ever raised."""
    body = can_i_body(namespace="team", verb="get", resource="imagestreams", subresource="layers", name="app")
    spans = top_level_fields(body)
    assert spans[0][0] == len(MAGIC) and spans[-1][1] == len(body)
    boundaries = {start for start, _ in spans} | {len(body)}
    for cut in range(len(MAGIC), len(body)):
        if cut in boundaries:
            assert isinstance(decode_object(body[:cut], SSAR), dict)
        else:
            with pytest.raises(ProtobufError):
                decode_object(body[:cut], SSAR)


def test_truncations_inside_the_object_are_refused():
    """The same for the review inside runtime.Unknown's raw bytes (its length fixed up, so
    only the inner message is short)."""
    raw = ssar(ld(1, resource_attributes(namespace="team", verb="get", resource="imagestreams")))
    inner = top_level_fields(MAGIC + raw)
    boundaries = {start - len(MAGIC) for start, _ in inner} | {len(raw)}
    for cut in range(1, len(raw)):
        if cut in boundaries:
            assert isinstance(decode_object(envelope(raw[:cut]), SSAR), dict)
        else:
            with pytest.raises(ProtobufError):
                decode_object(envelope(raw[:cut]), SSAR)


@pytest.mark.parametrize(
    "length",
    [2**31, 2**32 + 5, 2**63, 2**64 - 1, 1000],
    ids=["2^31", "2^32+5", "2^63", "2^64-1", "1000"],
)
def test_a_length_past_the_end_is_refused(length):
    """A length-delimited field claiming more bytes than the body has, in the envelope and
    inside the object; no allocation of that size is attempted (this returns at once)."""
    assert "truncated" in refused(MAGIC + key(2, LEN) + varint(length) + b"abc")
    raw = key(2, LEN) + varint(length) + ld(1, b"")
    assert "truncated" in refused(envelope(raw))
    assert "truncated" in refused(MAGIC + ld(1, key(1, LEN) + varint(length) + b"v1"))  # inside typeMeta


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x08", "truncated varint"),  # a key, then nothing
        (b"\x08\x96", "truncated varint"),  # a varint whose last byte says more follows
        (b"\x08" + b"\xff" * 10 + b"\x01", "varint longer than 10 bytes"),
        (b"\x80" * 11, "varint longer than 10 bytes"),  # the key itself
        (b"\x00\x01", "field number 0"),
        (key(1, SGROUP) + key(1, EGROUP), "wire type 3"),  # groups: deprecated, not k8s
        (key(1, EGROUP), "wire type 4"),
        (key(1, 6) + b"\x00", "wire type 6"),
        (key(1, 7) + b"\x00", "wire type 7"),
        (key(9, I64) + b"\x00" * 7, "truncated"),  # fixed64 with seven bytes
        (key(9, I32) + b"\x00" * 3, "truncated"),
        (key(9, LEN), "truncated varint"),  # a length-delimited key without its length
    ],
    ids=[
        "key-only",
        "cut-varint",
        "11-byte-varint",
        "11-byte-key",
        "field-0",
        "group",
        "end-group",
        "wire-6",
        "wire-7",
        "short-fixed64",
        "short-fixed32",
        "no-length",
    ],
)
def test_malformed_wire_data_is_refused_at_every_level(data, why):
    """The same bad bytes as the envelope, inside typeMeta, the object, its spec and its
    attributes."""
    placements = [
        MAGIC + data,
        MAGIC + ld(1, data),
        envelope(data),
        envelope(ld(2, data)),
        envelope(ld(2, ld(1, data))),
    ]
    for body in placements:
        assert why in refused(body), body


def test_wrong_wire_types_for_declared_fields_are_refused():
    """A message or string field sent as a varint is an error (client-go's generated
    unmarshallers refuse a wrong wire type too), as is a string that is not UTF-8."""
    assert "expected a message" in refused(MAGIC + vi(1, 5))  # typeMeta as a number
    assert "expected bytes" in refused(MAGIC + ld(1, vi(2, 5)))  # kind as a number
    assert "expected bytes" in refused(MAGIC + vi(2, 5))  # raw as a number
    assert "expected a message" in refused(envelope(vi(2, 1)))  # spec as a number
    assert "expected a message" in refused(envelope(ld(2, vi(1, 1))))  # resourceAttributes
    assert "expected bytes" in refused(envelope(ld(2, ld(1, vi(2, 1)))))  # verb as a number
    assert "not UTF-8" in refused(envelope(ld(2, ld(1, ld(2, b"\xff\xfe")))))  # verb
    assert "not UTF-8" in refused(MAGIC + ld(1, ld(2, b"\xc3")))  # kind, a cut two-byte character
    assert "not UTF-8" in refused(MAGIC + ld(1, ld(1, b"\xed\xa0\x80")))  # a surrogate (CESU-8)
    with pytest.raises(ProtobufError, match="expected a number"):
        decode(ld(1, b"\x01"), {1: ("count", "int")})


def test_random_bytes_never_raise_anything_but_protobuf_error():
    """Seeded fuzzing: random bodies after the magic, and valid bodies with bytes flipped,
    inserted or deleted, either decode to a dict or raise ProtobufError."""
    rng = random.Random(20240611)
    valid = can_i_body(namespace="team", verb="get", group="image.openshift.io", resource="imagestreams", name="x")
    bodies = [MAGIC + rng.randbytes(rng.randrange(0, 64)) for _ in range(3000)]
    for _ in range(3000):
        body = bytearray(valid)
        for _ in range(rng.randrange(1, 4)):
            pos = rng.randrange(len(MAGIC), len(body))
            action = rng.randrange(3)
            if action == 0:
                body[pos] = rng.randrange(256)
            elif action == 1:
                body.insert(pos, rng.randrange(256))
            elif len(body) > len(MAGIC) + 1:
                del body[pos]
        bodies.append(bytes(body))
    outcomes = {"decoded": 0, "refused": 0}
    for body in bodies:
        try:
            result = decode_object(body, SSAR)
        except ProtobufError:
            outcomes["refused"] += 1
        else:
            assert isinstance(result, dict)
            assert isinstance(result["kind"], str) and isinstance(result["apiVersion"], str)
            outcomes["decoded"] += 1
    assert outcomes["decoded"] and outcomes["refused"], outcomes  # both paths were exercised


def nested(depth: int, number: int = 1, leaf: bytes = b"") -> bytes:
    """`leaf` as field `number` of a message that is field `number` of ... `depth` times
    (built outside-in from the sizes, as nesting by concatenation would be quadratic)."""
    prefixes, size = [], len(leaf)
    for _ in range(depth):
        prefix = key(number, LEN) + varint(size)
        prefixes.append(prefix)
        size += len(prefix)
    return b"".join(reversed(prefixes)) + leaf


def test_deeply_nested_unknown_fields_are_not_descended_into():
    """Fifty thousand levels of embedded messages (far past Python's recursion limit) in
    fields the message does not declare, at each level, cost no recursion: unknown fields
    are skipped as bytes, so the decoder's depth is bounded by the declared message."""
    deep = nested(50_000, number=20)
    attributes = resource_attributes(verb="get", resource="imagestreams") + deep
    raw = deep + ssar(deep + ld(1, attributes))
    body = MAGIC + deep + ld(1, deep + ld(1, API_VERSION) + ld(2, "SelfSubjectAccessReview")) + ld(2, raw)
    assert decode_object(body, SSAR) == expected_can_i(verb="get", resource="imagestreams")


def test_deep_nesting_along_declared_fields_stops_at_the_declared_depth():
    """Nesting that follows the declared field numbers (review.spec = 2, spec.resourceAttributes
    = 1, attributes.namespace = 1, ...) reaches a string after three levels; what lies below
    is that string's bytes, never parsed, so any depth is either a string or refused."""
    for depth in (3, 4, 10, 1000, 20_000):
        body = envelope(ld(2, nested(depth - 1, number=1, leaf=b"x")))
        try:
            decoded = decode_object(body, SSAR)
        except ProtobufError as e:
            assert "not UTF-8" in str(e), (depth, e)
        else:
            assert isinstance(decoded["spec"]["resourceAttributes"]["namespace"], str), depth


def test_a_secret_as_kubectl_create_secret_sends_it():
    from registry.kube.core_v1 import SECRETS

    def entry(number: int, k: str, v: bytes | str) -> bytes:
        return ld(number, ld(1, k) + ld(2, v))

    meta = ld(1, "pull") + ld(3, "team") + entry(11, "a", "b") + entry(11, "c", "d") + entry(12, "note", "x")
    raw = ld(1, meta) + entry(2, ".dockerconfigjson", b"\x00{}\xff") + ld(3, "kubernetes.io/dockerconfigjson")
    raw += entry(4, "plain", "text") + vi(5, 1)
    obj = decode_object(envelope(raw, kind="Secret", api_version="v1"), SECRETS.protobuf)
    assert obj == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "pull", "namespace": "team", "labels": {"a": "b", "c": "d"}, "annotations": {"note": "x"}},
        "data": {".dockerconfigjson": "AHt9/w=="},  # bytes as the JSON form has them: base64
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {"plain": "text"},
        "immutable": True,
    }
    with pytest.raises(ProtobufError):
        decode_object(envelope(ld(1, meta) + vi(2, 7), kind="Secret", api_version="v1"), SECRETS.protobuf)

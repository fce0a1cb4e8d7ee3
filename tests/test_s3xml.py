"""The S3 XML that offload reads without boto3: listings, uploads, delete answers."""

from __future__ import annotations

import html
from urllib.parse import quote_plus
from xml.etree import ElementTree

import pytest
from hypothesis import given
from hypothesis import strategies as st

from offload.storage import s3xml
from offload.storage.base import StorageError
from offload.storage.s3xml import (
    S3_NAMESPACE,
    delete_errors,
    delete_request,
    parse_listing,
    parse_uploads,
)

PAGE = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>media</Name><Prefix>site/</Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <Contents>
    <Key>site/2024/05/a+b%20c%26d.jpg</Key>
    <LastModified>2024-05-01T10:00:00.000Z</LastModified>
    <ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag>
    <ChecksumAlgorithm>CRC32</ChecksumAlgorithm>
    <Size>20480</Size>
    <Owner><ID>o</ID><DisplayName>owner</DisplayName></Owner>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents>
    <Size>0</Size><Key>site/%C3%BC/empty</Key>
    <ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag>
    <LastModified>2024-05-02T10:00:00Z</LastModified>
  </Contents>
  <Contents>
    <Key>site/video.mp4</Key><LastModified>2024-05-03T10:00:00Z</LastModified>
    <ETag>&quot;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-3&quot;</ETag><Size>26214400</Size>
  </Contents>
  <EncodingType>url</EncodingType>
  <ContinuationToken>t0</ContinuationToken>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <StartAfter></StartAfter>
</ListBucketResult>"""


def test_a_listing_page_gives_each_objects_decoded_key_size_etag_and_time():
    listing = parse_listing(PAGE)
    assert listing.objects == [
        ("site/2024/05/a b c&d.jpg", 20480, "0123456789abcdef" * 2, "2024-05-01T10:00:00.000Z"),
        ("site/ü/empty", 0, "d41d8cd98f00b204e9800998ecf8427e", "2024-05-02T10:00:00Z"),
        ("site/video.mp4", 26214400, "a" * 32 + "-3", "2024-05-03T10:00:00Z"),
    ]
    assert listing.truncated
    assert listing.next_token == "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="


def test_a_listing_that_did_not_url_encode_keeps_plus_signs_and_unescapes_entities():
    page = (
        b"<ListBucketResult><IsTruncated>false</IsTruncated>"
        b"<Contents><Key>a+b &amp; &lt;c&gt; &#233;.jpg</Key><Size>5</Size>"
        b"<ETag>&quot;x&quot;</ETag><LastModified>2024-05-01T10:00:00Z</LastModified></Contents>"
        b"</ListBucketResult>"
    )
    listing = parse_listing(page)
    assert [key for key, *_ in listing.objects] == ["a+b & <c> é.jpg"]
    assert not listing.truncated
    assert listing.next_token is None


def test_an_empty_listing_has_no_objects_and_is_not_truncated():
    page = (
        b'<ListBucketResult xmlns="x"><KeyCount>0</KeyCount>'
        b"<IsTruncated>false</IsTruncated></ListBucketResult>"
    )
    listing = parse_listing(page)
    assert (listing.objects, listing.truncated, listing.next_token) == ([], False, None)


def test_an_uploads_page_gives_keys_initiation_times_and_the_next_markers():
    page = b"""<ListMultipartUploadsResult>
      <Bucket>media</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
      <NextKeyMarker>b.mp4</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>
      <IsTruncated>true</IsTruncated>
      <Upload><Key>a.mp4</Key><UploadId>u1</UploadId>
        <Initiated>2024-05-01T10:00:00Z</Initiated></Upload>
      <Upload><Key>b &amp; c.mp4</Key><UploadId>u2</UploadId>
        <Initiated>2024-05-02T10:00:00Z</Initiated></Upload>
    </ListMultipartUploadsResult>"""
    uploads = parse_uploads(page)
    assert uploads.uploads == [
        ("a.mp4", "2024-05-01T10:00:00Z"),
        ("b & c.mp4", "2024-05-02T10:00:00Z"),
    ]
    assert uploads.truncated
    assert uploads.markers == {"key-marker": "b.mp4", "upload-id-marker": "u2"}


def test_a_delete_request_is_quiet_xml_that_names_every_key_exactly():
    keys = ["plain.jpg", "a & b <c>.png", 'quote"s/ü.txt']
    body = delete_request(keys)
    root = ElementTree.fromstring(body)  # noqa: S314 - our own document
    assert root.tag == f"{{{S3_NAMESPACE}}}Delete"
    ns = {"s3": S3_NAMESPACE}
    assert root.findtext("s3:Quiet", namespaces=ns) == "true"
    assert [o.findtext("s3:Key", namespaces=ns) for o in root.findall("s3:Object", ns)] == keys


def test_a_delete_answer_names_the_keys_that_were_not_deleted():
    answer = b"""<DeleteResult>
      <Deleted><Key>gone.jpg</Key></Deleted>
      <Error><Key>kept &amp; locked.jpg</Key><Code>AccessDenied</Code><Message>no</Message></Error>
    </DeleteResult>"""
    assert delete_errors(answer) == [("kept & locked.jpg", "AccessDenied")]
    assert delete_errors(b"<DeleteResult></DeleteResult>") == []


#: Characters an XML 1.0 document can carry as text (S3 URL-encodes the others).
XML_TEXT = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")
KEYS = st.lists(st.text(XML_TEXT, min_size=1, max_size=30), max_size=8)


def listing_page(keys: list[str], *, encoded: bool, namespace: str | None = S3_NAMESPACE) -> bytes:
    """A ListObjectsV2 page as S3 writes it: URL-encoded keys, or XML-escaped ones."""
    xmlns = f' xmlns="{namespace}"' if namespace is not None else ""
    contents = "".join(
        f"<Contents><Key>{quote_plus(key, safe='/') if encoded else html.escape(key)}</Key>"
        f"<LastModified>2024-05-01T10:00:00.000Z</LastModified>"
        f"<ETag>&quot;{index:032x}&quot;</ETag><Size>{index}</Size>"
        f"<StorageClass>STANDARD</StorageClass></Contents>"
        for index, key in enumerate(keys)
    )
    encoding = "<EncodingType>url</EncodingType>" if encoded else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult{xmlns}>'
        f"<Name>media</Name>{encoding}<IsTruncated>false</IsTruncated>{contents}"
        f"</ListBucketResult>"
    ).encode()


@given(KEYS, st.booleans())
def test_every_key_reads_back_as_it_was_listed(keys, encoded):
    listing = parse_listing(listing_page(keys, encoded=encoded))
    assert [key for key, *_ in listing.objects] == keys
    assert [size for _, size, _, _ in listing.objects] == list(range(len(keys)))


@pytest.mark.parametrize("namespace", [S3_NAMESPACE, None, "urn:another"])
def test_a_listing_reads_the_same_in_the_s3_namespace_another_or_none(namespace):
    page = listing_page(["a.jpg", "b c.jpg"], encoded=True, namespace=namespace)
    assert [key for key, *_ in parse_listing(page).objects] == ["a.jpg", "b c.jpg"]


def test_a_listing_whose_elements_carry_a_namespace_prefix_reads_the_same():
    page = PAGE.replace(b"<", b"<s3:").replace(b"<s3:/", b"</s3:").replace(b"<s3:?", b"<?")
    page = page.replace(b'xmlns="', b'xmlns:s3="')
    assert page.count(b"<s3:Contents>") == 3
    assert parse_listing(page) == parse_listing(PAGE)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE ListBucketResult [
  <!ENTITY a "aaaaaaaaaa">
  <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
  <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
  <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
  <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
  <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
  <!ENTITY g "&f;&f;&f;&f;&f;&f;&f;&f;&f;&f;">
  <!ENTITY h "&g;&g;&g;&g;&g;&g;&g;&g;&g;&g;">
]>
<ListBucketResult><Contents><Key>&h;</Key><Size>1</Size></Contents></ListBucketResult>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE ListBucketResult [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<ListBucketResult><Contents><Key>&secret;</Key><Size>1</Size></Contents></ListBucketResult>"""


@pytest.mark.parametrize(
    "parse", [parse_listing, parse_uploads, delete_errors], ids=lambda f: f.__name__
)
@pytest.mark.parametrize("document", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["laughs", "xxe"])
def test_an_answer_with_a_dtd_is_refused_before_any_entity_is_expanded(parse, document):
    with pytest.raises(StorageError, match="declares a DTD, which S3 never sends"):
        parse(document)


def test_a_dtd_hidden_in_another_encoding_is_refused_too():
    document = BILLION_LAUGHS.replace(b'version="1.0"', b'version="1.0" encoding="UTF-16"')
    with pytest.raises(StorageError, match="not well-formed"):
        parse_listing(document.decode().encode("utf-16"))


def test_an_entity_that_was_never_declared_is_an_error_not_a_fetch():
    page = b"<ListBucketResult><Contents><Key>&secret;</Key></Contents></ListBucketResult>"
    with pytest.raises(StorageError, match="not well-formed XML"):
        parse_listing(page)


def test_an_answer_larger_than_any_s3_sends_is_refused_unparsed(monkeypatch):
    monkeypatch.setattr(s3xml, "MAX_ANSWER", len(PAGE) - 1)
    with pytest.raises(StorageError, match=f"is {len(PAGE):,} bytes, more than"):
        parse_listing(PAGE)


def test_a_cut_off_listing_is_an_error_rather_than_a_shorter_last_page():
    with pytest.raises(StorageError, match=r"ListObjectsV2 answer is not well-formed XML \(.*line"):
        parse_listing(PAGE[: PAGE.index(b"<EncodingType>")])


def test_a_size_that_is_not_a_number_is_an_error():
    page = b"<ListBucketResult><Contents><Key>a</Key><Size>big</Size></Contents></ListBucketResult>"
    with pytest.raises(StorageError, match="size that is not a number"):
        parse_listing(page)


ERROR_ANSWER = b"""<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"""


@pytest.mark.parametrize("parse", [parse_listing, parse_uploads], ids=lambda f: f.__name__)
def test_an_error_document_in_place_of_a_page_is_an_error_naming_its_code(parse):
    with pytest.raises(StorageError, match="with an error: InternalError"):
        parse(ERROR_ANSWER)


def test_an_error_document_in_place_of_a_delete_answer_is_one_error_without_a_key():
    assert delete_errors(ERROR_ANSWER) == [("", "InternalError")]


@pytest.mark.parametrize("answer", [b"", b"  \n"])
def test_an_empty_delete_answer_reports_no_failed_keys(answer):
    assert delete_errors(answer) == []

"""The S3 XML that offload reads without boto3: listings, uploads, delete answers."""

from __future__ import annotations

from xml.etree import ElementTree

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

"""Bucket tools: names checked in CI, policies, archives and the asset layout check.

``lint`` finds bucket names in files (``lint_sources`` knows each file kind)
and judges them with the rules in ``offload.storage.bucketname``;
``policies`` renders bucket and IAM policies; ``archive`` streams a prefix as
a tarball; ``layout`` checks that an asset server's folders exist and hold
only what they should.
"""

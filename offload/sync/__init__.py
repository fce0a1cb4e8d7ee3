"""``offload sync``: keep folders and buckets in step, with ``aws s3 sync`` semantics.

``runner.run_sync()`` is the one entry point (``offload sync``, ``--mode
merge``, ``offload backup`` and the server's background runs). The parts, in
the order a run uses them (cut as rclone cuts ``fs/march``, ``fs/sync`` and
``fs/operations``):

- ``locations``: what SRC and DST name (a folder, a bucket, a site);
- ``filters``: ``--exclude``/``--include``;
- ``walk``: a local tree as one sorted stream;
- ``march``: the two sorted listings merged into pairs, a batch at a time;
- ``decide``: which pairs to transfer, with the rules of ``compare`` and the
  facts of the sync ``state`` cache (or a HEAD);
- ``transfer``: uploads, downloads and copies at bounded concurrency, within
  a memory ``budget``;
- ``delete``: deletions once every transfer succeeded, behind their guards,
  waiting in a ``spool``; and the leftovers of interrupted runs;
- ``engine``: one run, the parts in order, sharing a ``context``;
- ``report``: aws-style lines, JSON, progress, exit codes.
"""

"""``offload sync``: keep folders and buckets in step, with ``aws s3 sync`` semantics.

The parts, in the order a run uses them: ``locations`` (what SRC and DST
name), ``filters`` (``--exclude``/``--include``), ``walk`` (a local tree as a
sorted stream), ``plan`` (merge two sorted listings into actions), ``engine``
(run the actions with bounded concurrency), ``report`` (aws-style lines,
JSON, progress, exit codes).
"""

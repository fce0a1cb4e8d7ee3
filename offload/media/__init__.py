"""Offloading a CMS's uploads: what the webhooks and ``offload reindex`` do with files.

``payloads`` reads what a CMS sends (WordPress attachment metadata or a list of
files); ``offloader`` copies the files to the site's storage and answers with
CDN URLs; ``manifest`` records what was offloaded (SQLite); ``reindex``
rebuilds it from a bucket listing; ``rewrite`` turns upload URLs into CDN URLs
in HTML and JSON; ``wordpress`` renders the site's must-use plugin. No aiohttp
here: the server reads requests and calls in.
"""

"""HTTP helpers with no server of their own: caching rules, signing, bodies, zero-copy.

``caching`` holds the RFC 9110 rules (validators, conditional requests,
ranges, Cache-Control); ``signing`` signs and checks URLs and webhook bodies;
``formdata`` reads multipart/form-data bodies; ``zerocopy`` sends files and
relays sockets with sendfile and splice.
"""

"""The ``offload`` command: parsing arguments and printing; the work is in the library.

``main`` builds the parser and turns every ``OffloadError`` into one line and
its exit code; one module per group of commands (``buckets``, ``media``,
``sync``) adds its subcommands; ``configargs`` finds and loads the
configuration a command names; ``environment`` holds the streams and
variables a command reads, as a leaf the others import.
"""

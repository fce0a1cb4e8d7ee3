"""Configuration: every setting declared once, loaded from TOML and ``OFFLOAD_*``.

``settings`` declares the global settings and a site's (``Settings``,
``Site``); ``kinds`` says how each kind of value is read, checked and shown;
``loading`` reads the file and the environment and reports every problem at
once; ``embedded`` is the default site on a local folder when there is no
file; ``sites`` opens a site's storage with the process-wide options;
``render`` fills the templates that ship in the package.
"""

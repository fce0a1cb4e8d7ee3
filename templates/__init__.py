"""jinja2 templates offload renders (configs, policies, nginx, pages).

Loaded by offload.config.render.
"""

"""jinja2 templates offload renders (configs, policies, nginx, pages); loaded by offload.config.render."""

"""offload: media offload service and CDN origin for CMS sites."""

__version__ = "0.1.0"

"""One module per CDN purge API, behind one Provider interface."""

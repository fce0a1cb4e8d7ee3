"""Images on demand (resized and converted variants kept in the bucket) and asset servers."""

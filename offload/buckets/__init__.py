"""buckets"""

"""Data collection: behaviour policies and writers of Minari datasets."""

"""The registration authority: the one place that decides "issue or refuse"."""

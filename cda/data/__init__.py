"""Data files of the CDA engine (CSV). See README.md for their sources."""

"""CI-SIS CDA R2 engine: build, parse, validate and classify documents. Pure library: no Qt, no network."""

"""HTTP clients of the two APIs.  They know paths and JSON shapes, never the mapping."""

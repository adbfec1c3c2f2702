"""Load generator and benchmark runner (`make bench`); see docs/performance.md."""

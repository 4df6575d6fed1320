"""Delta Lake tables written by goldstream."""

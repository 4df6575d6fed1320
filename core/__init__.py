"""goldstream core: domain types, errors, settings and metric declarations. Imports nothing of ours."""

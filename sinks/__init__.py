"""Writers: Delta Lake tables, the dead-letter topic, target-system API clients. Imports core only."""

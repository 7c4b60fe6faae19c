"""Model zoo: names, metadata and where weight files come from (torch-free)."""

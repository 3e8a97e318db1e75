"""learnae.storage (filled in by its issue)."""

"""learnae.data (filled in by its issue)."""

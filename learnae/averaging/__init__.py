"""learnae.averaging (filled in by its issue)."""

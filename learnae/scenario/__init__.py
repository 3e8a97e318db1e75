"""learnae.scenario (filled in by its issue)."""

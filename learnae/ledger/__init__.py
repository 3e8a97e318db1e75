"""learnae.ledger (filled in by its issue)."""

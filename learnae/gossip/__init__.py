"""learnae.gossip (filled in by its issue)."""

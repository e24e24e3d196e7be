"""The shared experiment harness: data fetching, seeding, checkpoints, progress, results."""

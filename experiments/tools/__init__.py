"""One-off tools on finished runs: ask a run, evaluate it again, merge results, forgetting."""

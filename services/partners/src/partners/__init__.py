"""Partners: the accounting-firm partner program (tiers, benefits, commissions, directory)."""

-- Perpetual solvency (issue 17 item 5): accounts -3000-i are the insurance fund of
-- perpetual i. No system account but the outside world (0) may go negative any more: the
-- margin pools (-2000-i) lost their exemption. NOT VALID: the constraint binds every row
-- written from now on; a pool left negative by an older engine is not rewritten here (its
-- market's leader refuses to load it until an operator settles it).
ALTER TABLE balances DROP CONSTRAINT IF EXISTS balances_non_negative;
ALTER TABLE balances ADD CONSTRAINT balances_non_negative CHECK (owner_id = 0 OR (available >= 0 AND held >= 0)) NOT VALID;
-- A perpetual that owed more than its pool and insurance fund held: it refuses new orders
-- while its row is here (an operator deletes it to reopen the market, then restarts its leader).
CREATE TABLE IF NOT EXISTS perp_halts (
    market          text PRIMARY KEY,
    shortfall_minor bigint NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);

-- The streams a target's floors were seeded for: a stream that starts naming a target's
-- parents (a touch added to a stream read for months) has rows no floor saw, so the target is
-- seeded again. A seed without it ('') is seeded again once, which is always safe.
ALTER TABLE derivation_floor_seeds ADD COLUMN streams text NOT NULL DEFAULT '';

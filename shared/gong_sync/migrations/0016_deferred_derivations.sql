-- When a noted parent is due to be derived: at once ('-infinity'), or at the next boundary of
-- its touch's period (Touch.every), so that a day's user changes share one derivation.
ALTER TABLE pending_derivations ADD COLUMN due timestamptz NOT NULL DEFAULT '-infinity';

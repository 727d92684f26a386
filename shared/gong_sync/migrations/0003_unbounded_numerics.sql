-- Bounded NUMERICs turned a single odd source value (a negative talk time, a float amount
-- of 1e30) into an error that failed its whole page every run. Unbounded NUMERIC stores any
-- finite value exactly; the engine still rejects NaN and infinities.
ALTER TABLE call_speakers ALTER COLUMN talk_time_percentage TYPE numeric;
ALTER TABLE transcripts ALTER COLUMN timestamp_seconds TYPE numeric;
ALTER TABLE transcripts ALTER COLUMN end_seconds TYPE numeric;
ALTER TABLE opportunities ALTER COLUMN amount TYPE numeric;

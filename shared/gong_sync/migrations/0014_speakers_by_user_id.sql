-- A user's change reaches the calls it spoke in through the speaker rows derived with its
-- id (Touch.was): one indexed lookup per page of users. External speakers have no user id.
CREATE INDEX call_speakers_user_id ON call_speakers (user_id) WHERE user_id IS NOT NULL;

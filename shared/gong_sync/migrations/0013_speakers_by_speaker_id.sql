-- A call_speaker or call_participant row may move to another call in place (its key is its
-- own id, not the call's). Its earlier call is found where it was derived: the speaker row
-- with its speaker id, one indexed lookup per page of those streams (Touch.was).
CREATE INDEX call_speakers_speaker_id ON call_speakers (speaker_id);

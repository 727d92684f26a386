-- The reader role's default privileges (0009) are for synced tables, but they also granted it
-- the run state later migrations created. Run state is ours: taken back here, and a later
-- migration that creates some revokes it too (tests/test_reader_role.py reads the catalog).
REVOKE ALL ON pending_derivations, verify_keys, verify_progress, derivation_floors,
    derivation_floor_seeds, sync_reread_requests FROM gong_sync_reader;

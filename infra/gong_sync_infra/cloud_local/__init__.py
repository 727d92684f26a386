"""`make cloud-local`: the deployed topology on this machine, as Google runs it."""

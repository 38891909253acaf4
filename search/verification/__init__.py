"""After the search: networks trained again with new seeds, the race at the target, and the
stored records of every seed."""

"""The results cache shared by every search on the machine: keys, entries, reuse, and its
listing and trimming (``budgetnas cache``)."""

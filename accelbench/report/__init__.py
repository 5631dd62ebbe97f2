"""Reporters: terminal (rich), HTML, markdown. They read records/DataFrames and never re-run anything."""

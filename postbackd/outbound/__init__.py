"""What to send and whether (pure): plan, macros, formats, request, signing, filters."""

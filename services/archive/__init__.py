"""Archive: object storage, snapshot uploads (segments and logs come later)."""

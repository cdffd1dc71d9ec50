"""The stream registry as a domain service: registrations, removals, status."""

"""Moderators: the live flag feed, actions on flags, and their delivery to platforms."""

"""Providers (platforms) and their hosts: the records the notice's licensing gate uses."""

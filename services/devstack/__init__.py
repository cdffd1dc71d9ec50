"""The local stack for development and tests: Tansu broker, SeaweedFS S3, nginx RTMP edge.

``python -m services.devstack up`` starts each server on a free loopback port,
waits until it answers and writes ``.dev/env``; ``down`` stops them. Both are
idempotent. Nothing here is used in production (see deploy/).
"""

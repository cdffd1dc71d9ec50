"""User and chat logs: intake, validation, archive to S3 partitioned by provider/date/hour."""

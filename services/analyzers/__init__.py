"""Analyzers beyond the nudity classifiers: codes, OCR, speech, and who gets them when."""

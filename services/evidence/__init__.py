"""Evidence for investigators: find what the archive holds, export it verifiably."""
